"""Mappings of MobiClocks rows to Procore entities (`mappings`). Takes a database connection (`db`); the caller
owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from services.mapping.domain import CurrentMapping, Source
from shared.events import ProcoreEntity


@dataclass(frozen=True)
class StoredMapping:
    entity: ProcoreEntity
    mobiclocks_id: str
    procore_project_id: int
    procore_id: int
    source: Source
    broken_reason: str | None


def _mapping(r: asyncpg.Record) -> StoredMapping:
    return StoredMapping(
        ProcoreEntity(r["entity"]),
        r["mobiclocks_id"],
        r["procore_project_id"],
        r["procore_id"],
        Source(r["source"]),
        r["broken_reason"],
    )


_MAPPING_COLUMNS = "entity, mobiclocks_id, procore_project_id, procore_id, source, broken_reason"


async def mapping_of(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None
) -> StoredMapping | None:
    r = await db.fetchrow(
        f"SELECT {_MAPPING_COLUMNS} FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
        " AND procore_project_id = $4",
        account_id,
        entity.value,
        mobiclocks_id,
        project_id or 0,
    )
    return _mapping(r) if r is not None else None


async def mappings_of_entity(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int | None = None
) -> list[StoredMapping]:
    rows = await db.fetch(
        f"SELECT {_MAPPING_COLUMNS} FROM mappings WHERE account_id = $1 AND entity = $2"
        " AND ($3::bigint IS NULL OR procore_project_id = $3)",
        account_id,
        entity.value,
        project_id,
    )
    return [_mapping(r) for r in rows]


async def all_mappings(db: asyncpg.Connection, account_id: str) -> list[StoredMapping]:
    rows = await db.fetch(f"SELECT {_MAPPING_COLUMNS} FROM mappings WHERE account_id = $1", account_id)
    return [_mapping(r) for r in rows]


def current_mappings(mappings: Sequence[StoredMapping]) -> dict[str, CurrentMapping]:
    """Working (not broken) mappings by MobiClocks id, as auto-map sees them."""
    return {m.mobiclocks_id: CurrentMapping(m.procore_id, m.source) for m in mappings if m.broken_reason is None}


async def holders_of(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
) -> list[str]:
    """MobiClocks ids whose working mapping points at this Procore entity."""
    rows = await db.fetch(
        "SELECT mobiclocks_id FROM mappings WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3"
        " AND procore_id = $4 AND broken_reason IS NULL",
        account_id,
        entity.value,
        project_id or 0,
        procore_id,
    )
    return [r["mobiclocks_id"] for r in rows]


async def set_mapping(
    db: asyncpg.Connection,
    account_id: str,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    project_id: int | None,
    procore_id: int | None,
    source: str,
    updated_by: str | None,
) -> bool:
    """Set or clear one mapping; True when what others see (the working Procore id) changed."""
    key = (account_id, entity.value, mobiclocks_id, project_id or 0)
    current = await db.fetchrow(
        "SELECT procore_id, broken_reason FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
        " AND procore_project_id = $4",
        *key,
    )
    working = current["procore_id"] if current is not None and current["broken_reason"] is None else None
    if procore_id is None:
        if current is None:
            return False
        await db.execute(
            "DELETE FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
            " AND procore_project_id = $4",
            *key,
        )
        return working is not None
    await db.execute(
        """
        INSERT INTO mappings (account_id, entity, mobiclocks_id, procore_project_id, procore_id, source, updated_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (account_id, entity, mobiclocks_id, procore_project_id) DO UPDATE SET
            procore_id = EXCLUDED.procore_id, source = EXCLUDED.source, updated_by = EXCLUDED.updated_by,
            broken_reason = NULL, updated_at = now()
        """,
        *key,
        procore_id,
        source,
        updated_by,
    )
    return working != procore_id


async def mark_broken(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
) -> list[StoredMapping]:
    """Working mappings to these (vanished) Procore entities, now flagged broken; returns them."""
    rows = await db.fetch(
        f"""
        UPDATE mappings m SET broken_reason = 'Procore ' || $5 || ' ' || coalesce(e.name, m.procore_id::text)
                || ' no longer exists in Procore', updated_at = now()
          FROM procore_entities e
         WHERE m.account_id = $1 AND m.entity = $2 AND m.procore_project_id = $3 AND m.procore_id = ANY($4::bigint[])
           AND m.broken_reason IS NULL
           AND e.account_id = m.account_id AND e.entity = m.entity AND e.procore_project_id = m.procore_project_id
           AND e.procore_id = m.procore_id
        RETURNING m.{_MAPPING_COLUMNS.replace(", ", ", m.")}
        """,
        account_id,
        entity.value,
        project_id,
        list(procore_ids),
        entity.value.replace("_", " "),
    )
    return [_mapping(r) for r in rows]


async def restore_broken(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
) -> list[StoredMapping]:
    """Broken mappings whose Procore entity is back: working again; returns them."""
    rows = await db.fetch(
        f"""
        UPDATE mappings SET broken_reason = NULL, updated_at = now()
         WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3 AND procore_id = ANY($4::bigint[])
           AND broken_reason IS NOT NULL
        RETURNING {_MAPPING_COLUMNS}
        """,
        account_id,
        entity.value,
        project_id,
        list(procore_ids),
    )
    return [_mapping(r) for r in rows]


async def working_mappings_to(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
) -> list[StoredMapping]:
    rows = await db.fetch(
        f"SELECT {_MAPPING_COLUMNS} FROM mappings WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3"
        " AND procore_id = ANY($4::bigint[]) AND broken_reason IS NULL",
        account_id,
        entity.value,
        project_id,
        list(procore_ids),
    )
    return [_mapping(r) for r in rows]


async def delete_account_mappings(db: asyncpg.Connection, account_id: str) -> list[StoredMapping]:
    """Every mapping of the account, deleted (the Procore company changed); returns those that worked."""
    rows = await db.fetch(f"DELETE FROM mappings WHERE account_id = $1 RETURNING {_MAPPING_COLUMNS}", account_id)
    return [m for m in (_mapping(r) for r in rows) if m.broken_reason is None]


async def mapped_project_ids(db: asyncpg.Connection, account_id: str) -> list[int]:
    """Procore projects at least one job site is (working) mapped to."""
    rows = await db.fetch(
        "SELECT DISTINCT procore_id FROM mappings WHERE account_id = $1 AND entity = 'project'"
        " AND broken_reason IS NULL ORDER BY procore_id",
        account_id,
    )
    return [r["procore_id"] for r in rows]
