"""Pure mapping rules: tabs per module, permissions, number normalization, auto-map, many-to-one.

No I/O. Rows come in as small dataclasses; decisions go out as dataclasses.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from shared.events import MOBICLOCKS_KIND_OF, Module, ProcoreEntity, ReferenceKind

TABS_OF_MODULE: dict[Module, tuple[ProcoreEntity, ...]] = {
    Module.MANPOWER: (ProcoreEntity.VENDOR, ProcoreEntity.PROJECT),
    Module.TIMECARD: (
        ProcoreEntity.PROJECT,
        ProcoreEntity.EMPLOYEE,
        ProcoreEntity.CLASSIFICATION,
        ProcoreEntity.COST_CODE,
        ProcoreEntity.PAYROLL_TYPE,
    ),
    Module.PRODUCTION_QUANTITY: (ProcoreEntity.PROJECT, ProcoreEntity.COST_CODE),
}

ENTITY_OF_KIND: dict[ReferenceKind, ProcoreEntity] = {kind: entity for entity, kind in MOBICLOCKS_KIND_OF.items()}

TAB_LABEL: dict[ProcoreEntity, str] = {
    ProcoreEntity.VENDOR: "Vendors",
    ProcoreEntity.PROJECT: "Projects",
    ProcoreEntity.EMPLOYEE: "Employees",
    ProcoreEntity.CLASSIFICATION: "Classifications",
    ProcoreEntity.COST_CODE: "Cost codes",
    ProcoreEntity.PAYROLL_TYPE: "Payroll types",
}

PROCORE_LABEL: dict[ProcoreEntity, str] = {
    ProcoreEntity.VENDOR: "vendor",
    ProcoreEntity.PROJECT: "project",
    ProcoreEntity.EMPLOYEE: "employee",
    ProcoreEntity.CLASSIFICATION: "classification",
    ProcoreEntity.COST_CODE: "cost code",
    ProcoreEntity.PAYROLL_TYPE: "payroll type",
}

MOBICLOCKS_LABEL: dict[ReferenceKind, str] = {
    ReferenceKind.COMPANY: "company",
    ReferenceKind.JOB_SITE: "job site",
    ReferenceKind.EMPLOYEE: "employee",
    ReferenceKind.PAY_CLASS: "pay class",
    ReferenceKind.COST_CODE: "cost code",
    ReferenceKind.PAY_ID: "pay ID",
}

PROJECT_SCOPED: frozenset[ProcoreEntity] = frozenset({ProcoreEntity.COST_CODE})
"""Procore keeps cost codes per project: they are synced and mapped per mapped Procore project."""

NEEDS_MAPPED_PROJECT: frozenset[ProcoreEntity] = frozenset({ProcoreEntity.COST_CODE, ProcoreEntity.CLASSIFICATION})
"""Tabs that show nothing until at least one project is mapped (the help article's rule). Classifications
are mapped per account (one pay class, one classification everywhere), but only those Procore offers in
the mapped projects (company-wide ones and those assigned to a mapped project) are shown."""

NUMBER_FIELD: dict[ProcoreEntity, str | None] = {
    ProcoreEntity.PROJECT: "project_number",
    ProcoreEntity.EMPLOYEE: "employee_id",
    ProcoreEntity.COST_CODE: "full_code",
    ProcoreEntity.PAYROLL_TYPE: "abbreviated_time_type",
    ProcoreEntity.VENDOR: None,
    ProcoreEntity.CLASSIFICATION: None,
}
"""The Procore field auto-map compares with the MobiClocks Number. Vendors and classifications have none:
a vendor's `abbreviated_name` and a classification's `abbreviation` are free-text short names, and
`origin_id` belongs to whatever integration set it, so matching on them would be guessing."""

MANY_TO_ONE: frozenset[ProcoreEntity] = frozenset(
    {ProcoreEntity.PROJECT, ProcoreEntity.COST_CODE, ProcoreEntity.CLASSIFICATION, ProcoreEntity.PAYROLL_TYPE}
)
"""Tabs where several MobiClocks rows may map to one Procore entity: several job sites of one Procore
project, finer MobiClocks cost codes rolled up into one Procore code, several pay classes into one
classification, several pay IDs into one payroll type. Vendors and employees are identities (one
company, one person): mapping two MobiClocks rows to one would merge two parties' records, so they are
one-to-one."""


class Permission(StrEnum):
    MAPPING = "procore.mapping"
    """The role permission "Procore Connect data mapping"."""
    SETUP = "procore.setup"
    """Administration > Integrations > Procore > Setup."""


PERMISSION_LABEL: dict[Permission, str] = {
    Permission.MAPPING: "Procore Connect data mapping",
    Permission.SETUP: "Procore setup (administrator)",
}


def refusal_for_permission(needed: Permission, permissions: Sequence[str] | None) -> str | None:
    """Why the requester may not do this, or None. None permissions: a trusted backend, not a user."""
    if permissions is None or needed.value in permissions:
        return None
    return f"this needs the permission {needed.value!r} ({PERMISSION_LABEL[needed]})"


def tabs_for(modules: Iterable[Module]) -> list[ProcoreEntity]:
    """The mapping tabs the enabled modules need, in the order of the help article."""
    wanted = {tab for m in modules for tab in TABS_OF_MODULE[m]}
    return [e for e in ProcoreEntity if e in wanted]


def two_way_entity(kind: ReferenceKind) -> ProcoreEntity:
    """In two-way accounts a MobiClocks entity's linked Procore id is its mapping."""
    return ENTITY_OF_KIND[kind]


_SPACES = re.compile(r"\s+")


def normalize_number(value: str | None) -> str | None:
    """Numbers compare after trimming, collapsing inner whitespace to one space, and casefolding.

    "  03-300 " = "03-300", "p 100" = "P  100"; punctuation and leading zeros are kept ("03-300" ≠
    "03 300" ≠ "3-300"): they are part of the number in both systems.
    """
    if value is None:
        return None
    normalized = _SPACES.sub(" ", value.strip()).casefold()
    return normalized or None


# --- auto-map ------------------------------------------------------------------------------


class Source(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"
    TWO_WAY = "two_way"


@dataclass(frozen=True)
class MobiClocksRow:
    entity_id: str
    name: str
    number: str | None


@dataclass(frozen=True)
class ProcoreRow:
    procore_id: int
    name: str
    number: str | None


@dataclass(frozen=True)
class CurrentMapping:
    procore_id: int
    source: Source


class Outcome(StrEnum):
    MAPPED = "mapped"
    SKIPPED = "skipped"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class RowDecision:
    mobiclocks_id: str
    outcome: Outcome
    reason: str
    procore_id: int | None = None


@dataclass(frozen=True)
class AutoMapPlan:
    decisions: list[RowDecision] = field(default_factory=list)

    @property
    def assignments(self) -> list[tuple[str, int]]:
        """(MobiClocks id, Procore id) pairs to store as `auto` mappings."""
        return [(d.mobiclocks_id, d.procore_id) for d in self.decisions if d.outcome is Outcome.MAPPED and d.procore_id]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for d in self.decisions if d.outcome is outcome)


def auto_map(
    entity: ProcoreEntity,
    mobiclocks: Sequence[MobiClocksRow],
    procore: Sequence[ProcoreRow],
    current: Mapping[str, CurrentMapping],
    overwrite_manual: bool = False,
) -> AutoMapPlan:
    """Decide, per MobiClocks row, whether equal numbers map it to one Procore entity.

    - mapped: exactly one Procore entity has the row's number (and, in one-to-one tabs, no other
      MobiClocks row has that number or already holds that entity);
    - ambiguous: several Procore entities share the number (or, one-to-one, several MobiClocks rows do):
      never guessed;
    - skipped: no number, no Procore entity with it, already mapped to it, or mapped by hand (kept
      unless `overwrite_manual`).
    """
    if NUMBER_FIELD[entity] is None:
        return AutoMapPlan([RowDecision(r.entity_id, Outcome.SKIPPED, "no Number field to match") for r in mobiclocks])
    by_number: dict[str, list[ProcoreRow]] = defaultdict(list)
    for p in procore:
        key = normalize_number(p.number)
        if key is not None:
            by_number[key].append(p)
    mc_by_number: dict[str, list[str]] = defaultdict(list)
    for r in mobiclocks:
        key = normalize_number(r.number)
        if key is not None:
            mc_by_number[key].append(r.entity_id)
    one_to_one = entity not in MANY_TO_ONE
    holder = {m.procore_id: mc_id for mc_id, m in current.items()}

    decisions: list[RowDecision] = []
    for row in sorted(mobiclocks, key=lambda r: r.entity_id):
        key = normalize_number(row.number)
        existing = current.get(row.entity_id)
        if key is None:
            decisions.append(RowDecision(row.entity_id, Outcome.SKIPPED, "has no number"))
            continue
        matches = by_number.get(key, [])
        if not matches:
            decisions.append(RowDecision(row.entity_id, Outcome.SKIPPED, f"no Procore entity has number {row.number}"))
            continue
        if len(matches) > 1:
            ids = ", ".join(str(m.procore_id) for m in matches)
            decisions.append(
                RowDecision(
                    row.entity_id,
                    Outcome.AMBIGUOUS,
                    f"{len(matches)} Procore entities have number {row.number} ({ids})",
                )
            )
            continue
        if one_to_one and len(mc_by_number[key]) > 1:
            others = ", ".join(i for i in mc_by_number[key] if i != row.entity_id)
            decisions.append(
                RowDecision(row.entity_id, Outcome.AMBIGUOUS, f"number {row.number} is shared with {others}")
            )
            continue
        target = matches[0]
        if existing is not None and existing.procore_id == target.procore_id:
            decisions.append(RowDecision(row.entity_id, Outcome.SKIPPED, "already mapped to it", target.procore_id))
            continue
        if existing is not None and existing.source is Source.MANUAL and not overwrite_manual:
            decisions.append(RowDecision(row.entity_id, Outcome.SKIPPED, "mapped by hand; kept"))
            continue
        if one_to_one and holder.get(target.procore_id, row.entity_id) != row.entity_id:
            decisions.append(
                RowDecision(
                    row.entity_id, Outcome.SKIPPED, f"{target.name} is already mapped from {holder[target.procore_id]}"
                )
            )
            continue
        if existing is not None:
            holder.pop(existing.procore_id, None)
        holder[target.procore_id] = row.entity_id
        decisions.append(RowDecision(row.entity_id, Outcome.MAPPED, f"number {row.number}", target.procore_id))
    return AutoMapPlan(decisions)


def one_to_one_conflict(entity: ProcoreEntity, mobiclocks_id: str, holders: Iterable[str]) -> str | None:
    """The other MobiClocks row that already holds this Procore entity in a one-to-one tab, if any."""
    if entity in MANY_TO_ONE:
        return None
    return next((h for h in sorted(holders) if h != mobiclocks_id), None)


def cost_code_label(name: str, number: str | None) -> str:
    return f"{number} {name}" if number else name
