"""Pure mapping rules: which tabs exist for the enabled modules, and two-way links."""

from __future__ import annotations

from collections.abc import Iterable

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


def tabs_for(modules: Iterable[Module]) -> list[ProcoreEntity]:
    """The mapping tabs the enabled modules need, in the order of the help article."""
    wanted = {tab for m in modules for tab in TABS_OF_MODULE[m]}
    return [e for e in ProcoreEntity if e in wanted]


def two_way_entity(kind: ReferenceKind) -> ProcoreEntity:
    """In two-way accounts a MobiClocks entity's linked Procore id is its mapping."""
    return ENTITY_OF_KIND[kind]
