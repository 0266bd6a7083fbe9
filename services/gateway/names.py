"""Names instead of raw ids: job sites, cost codes and the other references, from the read model's names. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.gateway.schemas import JobSite
from shared.events import ReferenceKind

# --- names -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Name:
    name: str
    number: str | None = None


Names = Mapping[tuple[str, str], Name]
"""(reference kind, MobiClocks id) → name and Number field."""

NUMBERED_LABELS = frozenset({ReferenceKind.COST_CODE})
"""Kinds shown as "number name" (cost codes read "03-300 Concrete"); others by name alone."""


def label(names: Names, kind: ReferenceKind, entity_id: str | None) -> str | None:
    if entity_id is None:
        return None
    found = names.get((kind.value, entity_id))
    if found is None:
        return entity_id
    if kind in NUMBERED_LABELS and found.number:
        return f"{found.number} {found.name}"
    return found.name


def job_site(names: Names, job_site_id: str) -> JobSite:
    found = names.get((ReferenceKind.JOB_SITE.value, job_site_id))
    if found is None:
        return JobSite(job_site_id=job_site_id, name=job_site_id)
    return JobSite(job_site_id=job_site_id, name=found.name, number=found.number)
