"""Synced Procore lists (`procore_entities`, `sync_runs`) and project directories (`project_directories`).
Takes a database connection (`db`); the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from services.mapping.domain import ProcoreRow
from shared.events import ProcoreEntity


@dataclass(frozen=True)
class SyncedEntity:
    procore_id: int
    name: str
    number: str | None
    project_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class SyncDiff:
    added: list[int]
    renamed: list[int]
    gone: list[int]
    returned: list[int]
    total: int


async def apply_sync(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int, items: Sequence[SyncedEntity]
) -> SyncDiff:
    """Make the stored list of one tab (and project) equal Procore's; vanished entities are flagged gone."""
    before = {
        r["procore_id"]: (r["name"], r["number"], r["gone"])
        for r in await db.fetch(
            "SELECT procore_id, name, number, gone FROM procore_entities"
            " WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3",
            account_id,
            entity.value,
            project_id,
        )
    }
    seen = {i.procore_id for i in items}
    await db.execute(
        """
        INSERT INTO procore_entities (account_id, entity, procore_project_id, procore_id, name, number, project_ids)
        SELECT $1, $2, $3, u.id, u.name, u.number, coalesce(
                   (SELECT array_agg(x::bigint) FROM jsonb_array_elements_text(u.project_ids) x), '{}')
          FROM jsonb_to_recordset($4::jsonb) AS u(id bigint, name text, number text, project_ids jsonb)
        ON CONFLICT (account_id, entity, procore_project_id, procore_id) DO UPDATE SET
            name = EXCLUDED.name, number = EXCLUDED.number, project_ids = EXCLUDED.project_ids,
            gone = false, gone_at = NULL, synced_at = now()
        """,
        account_id,
        entity.value,
        project_id,
        [{"id": i.procore_id, "name": i.name, "number": i.number, "project_ids": list(i.project_ids)} for i in items],
    )
    gone = sorted(pid for pid, (_, _, was_gone) in before.items() if pid not in seen and not was_gone)
    if gone:
        await db.execute(
            "UPDATE procore_entities SET gone = true, gone_at = now()"
            " WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3 AND procore_id = ANY($4::bigint[])",
            account_id,
            entity.value,
            project_id,
            gone,
        )
    added = sorted(seen - before.keys())
    returned = sorted(i.procore_id for i in items if i.procore_id in before and before[i.procore_id][2])
    renamed = sorted(
        i.procore_id
        for i in items
        if i.procore_id in before and not before[i.procore_id][2] and before[i.procore_id][0] != i.name
    )
    await db.execute(
        """
        INSERT INTO sync_runs (account_id, entity, procore_project_id, total, added, updated, gone)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (account_id, entity, procore_project_id) DO UPDATE SET synced_at = now(),
            total = EXCLUDED.total, added = EXCLUDED.added, updated = EXCLUDED.updated, gone = EXCLUDED.gone
        """,
        account_id,
        entity.value,
        project_id,
        len(items),
        len(added),
        len(renamed),
        len(gone),
    )
    return SyncDiff(added=added, renamed=renamed, gone=gone, returned=returned, total=len(items))


@dataclass(frozen=True)
class KnownEntity:
    name: str
    number: str | None
    gone: bool


async def procore_entity(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
) -> KnownEntity | None:
    r = await db.fetchrow(
        "SELECT name, number, gone FROM procore_entities WHERE account_id = $1 AND entity = $2"
        " AND procore_project_id = $3 AND procore_id = $4",
        account_id,
        entity.value,
        project_id or 0,
        procore_id,
    )
    return KnownEntity(r["name"], r["number"], r["gone"]) if r is not None else None


async def procore_name(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
) -> str | None:
    found = await procore_entity(db, account_id, entity, project_id, procore_id)
    return found.name if found is not None else None


async def procore_rows(
    db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int
) -> list[ProcoreRow]:
    """The live synced entities of one tab (and project), as auto-map sees them."""
    rows = await db.fetch(
        "SELECT procore_id, name, number FROM procore_entities WHERE account_id = $1 AND entity = $2"
        " AND procore_project_id = $3 AND NOT gone ORDER BY procore_id",
        account_id,
        entity.value,
        project_id,
    )
    return [ProcoreRow(r["procore_id"], r["name"], r["number"]) for r in rows]


async def project_of_cost_code(db: asyncpg.Connection, account_id: str, procore_id: int) -> int | None:
    """The Procore project a synced cost code belongs to (two-way links carry only the code's id)."""
    value: int | None = await db.fetchval(
        "SELECT procore_project_id FROM procore_entities WHERE account_id = $1 AND entity = 'cost_code'"
        " AND procore_id = $2 AND NOT gone LIMIT 1",
        account_id,
        procore_id,
    )
    return value


async def was_synced(db: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int) -> bool:
    return bool(
        await db.fetchval(
            "SELECT true FROM sync_runs WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3",
            account_id,
            entity.value,
            project_id,
        )
    )


async def forget_procore_entities(db: asyncpg.Connection, account_id: str) -> None:
    """The account now uses another Procore company: its synced lists and reports are someone else's."""
    for table in ("procore_entities", "sync_runs", "automap_reports"):
        await db.execute(f"DELETE FROM {table} WHERE account_id = $1", account_id)


async def replace_directories(db: asyncpg.Connection, account_id: str, directories: dict[int, list[int]]) -> None:
    """The mapped projects' directories as just synced; those of projects no longer mapped go."""
    await db.execute(
        "DELETE FROM project_directories WHERE account_id = $1 AND NOT (procore_project_id = ANY($2::bigint[]))",
        account_id,
        list(directories),
    )
    await db.executemany(
        """
        INSERT INTO project_directories (account_id, procore_project_id, person_ids, synced_at)
        VALUES ($1, $2, $3, now())
        ON CONFLICT (account_id, procore_project_id) DO UPDATE SET person_ids = EXCLUDED.person_ids, synced_at = now()
        """,
        [(account_id, project, sorted(set(people))) for project, people in directories.items()],
    )
