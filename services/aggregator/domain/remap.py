"""What a mapping or setup change affects (issue 11): the remap marks and how marked groups are cut into chunks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from services.aggregator.domain.validation import ENTITY_OF_DIM
from shared.events import (
    Module,
    ProcoreEntity,
)

EVERY_ENTRY = ("*", "")
"""The remap mark of a change that affects every entry of the account (the Procore company changed)."""
_DIM_OF_ENTITY: dict[ProcoreEntity, str] = {
    ProcoreEntity.PROJECT: "job_site_id",
    **{entity: dim for dim, (entity, _) in ENTITY_OF_DIM.items()},
}


def remap_mark(entity: ProcoreEntity, mobiclocks_id: str) -> tuple[str, str]:
    """(dim, value): the entries whose errors a change of this mapping may change are those with `value` in their
    dimension `dim` (a project's mapping: every entry of the job site; a cost code's, in any project: every entry
    with that cost code)."""
    return _DIM_OF_ENTITY[entity], mobiclocks_id


class SetupEffect(StrEnum):
    REBUILD = "rebuild"
    """The enabled modules changed: entries appear or stop being kept, so the account is recomputed at once."""
    REVALIDATE = "revalidate"
    """The Procore company changed: every entry's errors are re-checked (debounced)."""


def setup_effect(
    old_modules: frozenset[Module], old_company: int | None, new_modules: Iterable[Module], new_company: int | None
) -> SetupEffect | None:
    """What a setup change means for the entries; None when nothing they show depends on it (two-way only, or the
    same setup sent again)."""
    if frozenset(new_modules) != old_modules:
        return SetupEffect.REBUILD
    if new_company != old_company:
        return SetupEffect.REVALIDATE
    return None


def chunked(sizes: Sequence[tuple[Any, int]], max_entries: int) -> list[list[Any]]:
    """Groups (with how many entries each holds) cut into chunks of at most `max_entries` entries, in order; a group
    is never split, so one bigger than the limit is a chunk of its own."""
    chunks: list[list[Any]] = []
    current: list[Any] = []
    held = 0
    for group, n in sizes:
        if current and held + n > max_entries:
            chunks.append(current)
            current, held = [], 0
        current.append(group)
        held += n
    if current:
        chunks.append(current)
    return chunks
