"""MobiClocks reference entities, and the two-way links they carry: in a two-way account they are the mappings."""

from __future__ import annotations

from services.mapping import domain
from services.mapping.adapters.changes import Change, mapping_changed
from services.mapping.ports import MappingStore, UnitOfWork
from shared.events import (
    ProcoreEntity,
    ReferenceDeleted,
    ReferenceUpserted,
)

# --- MobiClocks reference entities and two-way links ---------------------------------------


async def apply_reference_event(stores: UnitOfWork, event: ReferenceUpserted | ReferenceDeleted) -> list[Change]:
    """Store MobiClocks reference entities; in two-way accounts their linked Procore ids are the mappings.

    A redelivered event changes nothing and emits nothing: its changes were queued with the first delivery.
    """
    async with stores.transaction() as store:
        await store.lock_account(event.account_id)
        await store.save_reference(event)
        if not await store.is_two_way(event.account_id):
            return []
        entity = domain.two_way_entity(event.kind)
        linked = event.linked_procore_id if isinstance(event, ReferenceUpserted) else None
        name = event.name if isinstance(event, ReferenceUpserted) else None
        changes = await _link(store, event.account_id, entity, event.entity_id, linked, name)
        await store.emit(changes)
        return changes


async def _link(
    store: MappingStore,
    account_id: str,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    linked: int | None,
    name: str | None,
) -> list[Change]:
    """Make one two-way mapping equal the linked id (cost codes: in the project the linked code belongs to)."""
    project: int | None = None
    if entity is ProcoreEntity.COST_CODE and linked is not None:
        project = await store.project_of_cost_code(account_id, linked)
    changes: list[Change] = []
    stale = [
        m
        for m in await store.mappings_of_entity(account_id, entity)
        if m.mobiclocks_id == mobiclocks_id and (linked is None or m.procore_project_id != (project or 0))
    ]
    for m in stale:
        scope = m.procore_project_id or None
        if await store.set_mapping(account_id, entity, mobiclocks_id, scope, None, "two_way", None):
            changes.append(mapping_changed(account_id, entity, mobiclocks_id, m.procore_project_id, None))
    if linked is not None and await store.set_mapping(
        account_id, entity, mobiclocks_id, project, linked, "two_way", None
    ):
        known = await store.procore_entity(account_id, entity, project, linked)
        shown = (known.name if known is not None else None) or name
        changes.append(mapping_changed(account_id, entity, mobiclocks_id, project, linked, shown))
    return changes


async def adopt_two_way_links(store: MappingStore, account_id: str) -> list[Change]:
    """Two-way: the mappings become exactly the links carried by the MobiClocks reference entities."""
    links = {
        (domain.two_way_entity(kind), entity_id): (linked, name)
        for kind, entity_id, linked, name in await store.linked_references(account_id)
    }
    changes: list[Change] = []
    for m in await store.all_mappings(account_id):
        if (m.entity, m.mobiclocks_id) not in links:
            project = m.procore_project_id or None
            if await store.set_mapping(account_id, m.entity, m.mobiclocks_id, project, None, "two_way", None):
                changes.append(mapping_changed(account_id, m.entity, m.mobiclocks_id, m.procore_project_id, None))
    for (entity, mobiclocks_id), (linked, name) in sorted(links.items()):
        changes += await _link(store, account_id, entity, mobiclocks_id, linked, name)
    return changes
