"""The mapping rules of the product that more than one service needs: which tabs exist for the
enabled modules, which Procore field auto-map compares, which tabs allow one Procore entity for
several MobiClocks rows, and which are scoped by project. The mapping service enforces them; the
gateway uses the same definitions to describe the tabs and to answer early.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared import labels
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

TAB_LABEL: dict[ProcoreEntity, str] = {e: labels.ENTITIES[e.value] for e in ProcoreEntity}
"""Views of shared.labels keyed by the enums (the words live there only)."""
PROCORE_LABEL: dict[ProcoreEntity, str] = {e: labels.ENTITY_SINGULAR[e.value] for e in ProcoreEntity}
MOBICLOCKS_LABEL: dict[ReferenceKind, str] = {k: labels.MOBICLOCKS_KINDS[k.value] for k in ReferenceKind}

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


def tabs_for(modules: Iterable[Module]) -> list[ProcoreEntity]:
    """The mapping tabs the enabled modules need, in the order of the help article."""
    wanted = {tab for m in modules for tab in TABS_OF_MODULE[m]}
    return [e for e in ProcoreEntity if e in wanted]


def two_way_entity(kind: ReferenceKind) -> ProcoreEntity:
    """In two-way accounts a MobiClocks entity's linked Procore id is its mapping."""
    return ENTITY_OF_KIND[kind]
