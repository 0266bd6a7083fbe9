"""Mapping use cases: setup, MobiClocks reference entities, manual and two-way mappings."""

from __future__ import annotations

import asyncpg

from services.mapping import domain
from services.mapping.adapters import repository as repo
from shared.errors import InvalidMessage
from shared.events import (
    ConfigureSetup,
    MappingChanged,
    ReferenceDeleted,
    ReferenceUpserted,
    SetMapping,
    SetupChanged,
)

Change = SetupChanged | MappingChanged


async def configure_setup(conn: asyncpg.Connection, cmd: ConfigureSetup) -> list[Change]:
    """Store the account's setup; everyone else follows the SetupChanged event."""
    await repo.save_setup(
        conn, cmd.account_id, cmd.procore_company_id, cmd.enabled_modules, cmd.two_way, cmd.requested_by
    )
    return [
        SetupChanged(
            account_id=cmd.account_id,
            procore_company_id=cmd.procore_company_id,
            enabled_modules=cmd.enabled_modules,
            two_way=cmd.two_way,
        )
    ]


async def set_mapping(conn: asyncpg.Connection, cmd: SetMapping) -> list[Change]:
    """Manual mapping of one row (or clearing it). Two-way accounts map automatically, never by hand."""
    if await repo.is_two_way(conn, cmd.account_id):
        raise InvalidMessage("two-way accounts are mapped automatically from linked Procore ids")
    changed = await repo.set_mapping(
        conn, cmd.account_id, cmd.entity, cmd.mobiclocks_id, cmd.procore_project_id, cmd.procore_id, "manual",
        cmd.requested_by,
    )  # fmt: skip
    if not changed:
        return []
    name = None
    if cmd.procore_id is not None:
        name = await repo.procore_name(conn, cmd.account_id, cmd.entity, cmd.procore_project_id, cmd.procore_id)
    return [
        MappingChanged(
            account_id=cmd.account_id,
            entity=cmd.entity,
            mobiclocks_id=cmd.mobiclocks_id,
            procore_id=cmd.procore_id,
            procore_project_id=cmd.procore_project_id,
            procore_name=name,
        )
    ]


async def apply_reference_event(conn: asyncpg.Connection, event: ReferenceUpserted | ReferenceDeleted) -> list[Change]:
    """Store MobiClocks reference entities; in two-way accounts their linked Procore ids are the mappings."""
    await repo.save_reference(conn, event)
    if not await repo.is_two_way(conn, event.account_id):
        return []
    entity = domain.two_way_entity(event.kind)
    linked = event.linked_procore_id if isinstance(event, ReferenceUpserted) else None
    changed = await repo.set_mapping(conn, event.account_id, entity, event.entity_id, None, linked, "two_way", None)
    if not changed:
        return []
    return [
        MappingChanged(
            account_id=event.account_id,
            entity=entity,
            mobiclocks_id=event.entity_id,
            procore_id=linked,
            procore_name=event.name if linked is not None and isinstance(event, ReferenceUpserted) else None,
        )
    ]
