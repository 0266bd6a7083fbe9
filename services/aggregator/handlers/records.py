"""Changes made elsewhere: records changed in Procore (conflicts) and MobiClocks reference names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from services.aggregator import domain
from services.aggregator.adapters.entries import StoredEntry
from services.aggregator.adapters.history import HistoryRow
from shared.events import (
    Module,
    ProcoreChange,
    ProcoreRecordChanged,
    ReferenceDeleted,
    ReferenceKind,
    ReferenceUpserted,
)


class RecordChanges(Protocol):
    """What `apply_record_changed` uses (`adapters.store.Store` in the service)."""

    async def lock_entries_of_procore_record(
        self, account_id: str, module: Module, procore_id: int
    ) -> list[StoredEntry]: ...

    async def save_entries(self, changed: Sequence[StoredEntry]) -> None: ...

    async def add_history(self, rows: Sequence[HistoryRow]) -> None: ...


class ReferenceNames(Protocol):
    """What `apply_reference_event` uses."""

    async def save_reference_name(
        self, account_id: str, kind: ReferenceKind, entity_id: str, name: str | None, number: str | None
    ) -> None: ...


PROCORE_CHANGE = "procore"
"""A history step's `action` for a change made in Procore (a webhook delivery or the reconcile)."""


async def apply_record_changed(store: RecordChanges, change: ProcoreRecordChanged) -> bool:
    """A record changed or deleted in Procore: the Published entry that owns it shows the conflict at once."""
    found = await store.lock_entries_of_procore_record(change.account_id, change.module, change.procore_id)
    marked = []
    deleted = change.change is ProcoreChange.DELETED
    for entry in found:
        by_someone_else = change.source == "webhook"  # the delivery names its writer: not our own write
        state = domain.changed_in_procore(
            entry.state, deleted, change.changed_at, entry.procore_updated_at, same_time_counts=by_someone_else
        )
        if state is not entry.state:
            marked.append(replace(entry, state=state))
    if marked:
        await store.save_entries(marked)
        await store.add_history(
            [HistoryRow(e.entry_id, None, PROCORE_CHANGE, None, "conflict", e.state.last_error) for e in marked]
        )
    return bool(marked)


async def apply_reference_event(store: ReferenceNames, event: ReferenceUpserted | ReferenceDeleted) -> None:
    """Names are kept only to word the Non publishable errors."""
    if isinstance(event, ReferenceUpserted):
        await store.save_reference_name(event.account_id, event.kind, event.entity_id, event.name, event.number)
    else:
        await store.save_reference_name(event.account_id, event.kind, event.entity_id, None, None)
