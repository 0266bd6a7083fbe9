"""PostgreSQL access for the mapping service. Takes a connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.events import Module, ProcoreEntity, ReferenceDeleted, ReferenceUpserted


async def save_setup(
    conn: asyncpg.Connection,
    account_id: str,
    company_id: int | None,
    modules: Sequence[Module],
    two_way: bool,
    updated_by: str,
) -> None:
    await conn.execute(
        """
        INSERT INTO setups (account_id, procore_company_id, enabled_modules, two_way, updated_by)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (account_id) DO UPDATE SET procore_company_id = EXCLUDED.procore_company_id,
            enabled_modules = EXCLUDED.enabled_modules, two_way = EXCLUDED.two_way,
            updated_by = EXCLUDED.updated_by, updated_at = now()
        """,
        account_id,
        company_id,
        sorted(m.value for m in modules),
        two_way,
        updated_by,
    )


async def is_two_way(conn: asyncpg.Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT two_way FROM setups WHERE account_id = $1", account_id))


async def save_reference(conn: asyncpg.Connection, event: ReferenceUpserted | ReferenceDeleted) -> None:
    if isinstance(event, ReferenceDeleted):
        await conn.execute(
            "UPDATE reference_entities SET deleted = true, updated_at = now()"
            " WHERE account_id = $1 AND kind = $2 AND entity_id = $3",
            event.account_id,
            event.kind.value,
            event.entity_id,
        )
        return
    await conn.execute(
        """
        INSERT INTO reference_entities (account_id, kind, entity_id, name, number, linked_procore_id)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (account_id, kind, entity_id) DO UPDATE SET name = EXCLUDED.name, number = EXCLUDED.number,
            linked_procore_id = EXCLUDED.linked_procore_id, deleted = false, updated_at = now()
        """,
        event.account_id,
        event.kind.value,
        event.entity_id,
        event.name,
        event.number,
        event.linked_procore_id,
    )


async def set_mapping(
    conn: asyncpg.Connection,
    account_id: str,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    project_id: int | None,
    procore_id: int | None,
    source: str,
    updated_by: str | None,
) -> bool:
    """Set or clear one mapping; True when it changed."""
    key = (account_id, entity.value, mobiclocks_id, project_id or 0)
    current = await conn.fetchval(
        "SELECT procore_id FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
        " AND procore_project_id = $4",
        *key,
    )
    if current == procore_id:
        return False
    if procore_id is None:
        await conn.execute(
            "DELETE FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
            " AND procore_project_id = $4",
            *key,
        )
        return True
    await conn.execute(
        """
        INSERT INTO mappings (account_id, entity, mobiclocks_id, procore_project_id, procore_id, source, updated_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (account_id, entity, mobiclocks_id, procore_project_id) DO UPDATE SET
            procore_id = EXCLUDED.procore_id, source = EXCLUDED.source, updated_by = EXCLUDED.updated_by,
            updated_at = now()
        """,
        *key,
        procore_id,
        source,
        updated_by,
    )
    return True


async def procore_name(
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
) -> str | None:
    name: str | None = await conn.fetchval(
        "SELECT name FROM procore_entities WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3"
        " AND procore_id = $4",
        account_id,
        entity.value,
        project_id or 0,
        procore_id,
    )
    return name
