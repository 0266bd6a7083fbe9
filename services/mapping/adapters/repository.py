"""PostgreSQL access for the mapping service. Takes a connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from services.mapping.domain import CurrentMapping, MobiClocksRow, ProcoreRow, Source
from shared.events import Module, ProcoreEntity, ReferenceDeleted, ReferenceKind, ReferenceUpserted

# --- one writer per account ----------------------------------------------------------------


async def lock_account(conn: asyncpg.Connection, account_id: str) -> None:
    """Serialize the account's writes (until the transaction ends), across every instance of the service.

    Every transaction that changes an account's setup, connection or mappings takes it first, so two
    instances never decide from the same stale state (a sync's diff, a one-to-one check, the two-way
    switch) and the account's outbox rows are written in commit order. A lock on the account's identity,
    not on a row: the account may have no row yet.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':account'), hashtext($1))", account_id
    )


# --- setup ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredSetup:
    procore_company_id: int | None
    enabled_modules: list[Module]
    two_way: bool


async def save_setup(
    conn: asyncpg.Connection,
    account_id: str,
    company_id: int | None,
    modules: Sequence[Module],
    two_way: bool,
    updated_by: str | None,
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


async def read_setup(conn: asyncpg.Connection, account_id: str) -> StoredSetup | None:
    r = await conn.fetchrow(
        "SELECT procore_company_id, enabled_modules, two_way FROM setups WHERE account_id = $1", account_id
    )
    if r is None:
        return None
    return StoredSetup(r["procore_company_id"], [Module(m) for m in r["enabled_modules"]], r["two_way"])


async def is_two_way(conn: asyncpg.Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT two_way FROM setups WHERE account_id = $1", account_id))


# --- MobiClocks reference entities ---------------------------------------------------------


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


async def reference_rows(conn: asyncpg.Connection, account_id: str, kind: ReferenceKind) -> list[MobiClocksRow]:
    rows = await conn.fetch(
        "SELECT entity_id, name, number FROM reference_entities"
        " WHERE account_id = $1 AND kind = $2 AND NOT deleted ORDER BY entity_id",
        account_id,
        kind.value,
    )
    return [MobiClocksRow(r["entity_id"], r["name"], r["number"]) for r in rows]


async def linked_references(conn: asyncpg.Connection, account_id: str) -> list[tuple[ReferenceKind, str, int, str]]:
    """(kind, entity id, linked Procore id, name) of every live reference entity with a link (two-way)."""
    rows = await conn.fetch(
        "SELECT kind, entity_id, linked_procore_id, name FROM reference_entities"
        " WHERE account_id = $1 AND NOT deleted AND linked_procore_id IS NOT NULL",
        account_id,
    )
    return [(ReferenceKind(r["kind"]), r["entity_id"], r["linked_procore_id"], r["name"]) for r in rows]


# --- mappings ------------------------------------------------------------------------------


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
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None
) -> StoredMapping | None:
    r = await conn.fetchrow(
        f"SELECT {_MAPPING_COLUMNS} FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
        " AND procore_project_id = $4",
        account_id,
        entity.value,
        mobiclocks_id,
        project_id or 0,
    )
    return _mapping(r) if r is not None else None


async def mappings_of_entity(
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int | None = None
) -> list[StoredMapping]:
    rows = await conn.fetch(
        f"SELECT {_MAPPING_COLUMNS} FROM mappings WHERE account_id = $1 AND entity = $2"
        " AND ($3::bigint IS NULL OR procore_project_id = $3)",
        account_id,
        entity.value,
        project_id,
    )
    return [_mapping(r) for r in rows]


async def all_mappings(conn: asyncpg.Connection, account_id: str) -> list[StoredMapping]:
    rows = await conn.fetch(f"SELECT {_MAPPING_COLUMNS} FROM mappings WHERE account_id = $1", account_id)
    return [_mapping(r) for r in rows]


def current_mappings(mappings: Sequence[StoredMapping]) -> dict[str, CurrentMapping]:
    """Working (not broken) mappings by MobiClocks id, as auto-map sees them."""
    return {m.mobiclocks_id: CurrentMapping(m.procore_id, m.source) for m in mappings if m.broken_reason is None}


async def holders_of(
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
) -> list[str]:
    """MobiClocks ids whose working mapping points at this Procore entity."""
    rows = await conn.fetch(
        "SELECT mobiclocks_id FROM mappings WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3"
        " AND procore_id = $4 AND broken_reason IS NULL",
        account_id,
        entity.value,
        project_id or 0,
        procore_id,
    )
    return [r["mobiclocks_id"] for r in rows]


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
    """Set or clear one mapping; True when what others see (the working Procore id) changed."""
    key = (account_id, entity.value, mobiclocks_id, project_id or 0)
    current = await conn.fetchrow(
        "SELECT procore_id, broken_reason FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
        " AND procore_project_id = $4",
        *key,
    )
    working = current["procore_id"] if current is not None and current["broken_reason"] is None else None
    if procore_id is None:
        if current is None:
            return False
        await conn.execute(
            "DELETE FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
            " AND procore_project_id = $4",
            *key,
        )
        return working is not None
    await conn.execute(
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
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
) -> list[StoredMapping]:
    """Working mappings to these (vanished) Procore entities, now flagged broken; returns them."""
    rows = await conn.fetch(
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
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
) -> list[StoredMapping]:
    """Broken mappings whose Procore entity is back: working again; returns them."""
    rows = await conn.fetch(
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
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
) -> list[StoredMapping]:
    rows = await conn.fetch(
        f"SELECT {_MAPPING_COLUMNS} FROM mappings WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3"
        " AND procore_id = ANY($4::bigint[]) AND broken_reason IS NULL",
        account_id,
        entity.value,
        project_id,
        list(procore_ids),
    )
    return [_mapping(r) for r in rows]


async def delete_account_mappings(conn: asyncpg.Connection, account_id: str) -> list[StoredMapping]:
    """Every mapping of the account, deleted (the Procore company changed); returns those that worked."""
    rows = await conn.fetch(f"DELETE FROM mappings WHERE account_id = $1 RETURNING {_MAPPING_COLUMNS}", account_id)
    return [m for m in (_mapping(r) for r in rows) if m.broken_reason is None]


async def mapped_project_ids(conn: asyncpg.Connection, account_id: str) -> list[int]:
    """Procore projects at least one job site is (working) mapped to."""
    rows = await conn.fetch(
        "SELECT DISTINCT procore_id FROM mappings WHERE account_id = $1 AND entity = 'project'"
        " AND broken_reason IS NULL ORDER BY procore_id",
        account_id,
    )
    return [r["procore_id"] for r in rows]


# --- synced Procore entities ---------------------------------------------------------------


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
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int, items: Sequence[SyncedEntity]
) -> SyncDiff:
    """Make the stored list of one tab (and project) equal Procore's; vanished entities are flagged gone."""
    before = {
        r["procore_id"]: (r["name"], r["number"], r["gone"])
        for r in await conn.fetch(
            "SELECT procore_id, name, number, gone FROM procore_entities"
            " WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3",
            account_id,
            entity.value,
            project_id,
        )
    }
    seen = {i.procore_id for i in items}
    await conn.execute(
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
        await conn.execute(
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
    await conn.execute(
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
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
) -> KnownEntity | None:
    r = await conn.fetchrow(
        "SELECT name, number, gone FROM procore_entities WHERE account_id = $1 AND entity = $2"
        " AND procore_project_id = $3 AND procore_id = $4",
        account_id,
        entity.value,
        project_id or 0,
        procore_id,
    )
    return KnownEntity(r["name"], r["number"], r["gone"]) if r is not None else None


async def procore_name(
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
) -> str | None:
    found = await procore_entity(conn, account_id, entity, project_id, procore_id)
    return found.name if found is not None else None


async def procore_rows(
    conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int
) -> list[ProcoreRow]:
    """The live synced entities of one tab (and project), as auto-map sees them."""
    rows = await conn.fetch(
        "SELECT procore_id, name, number FROM procore_entities WHERE account_id = $1 AND entity = $2"
        " AND procore_project_id = $3 AND NOT gone ORDER BY procore_id",
        account_id,
        entity.value,
        project_id,
    )
    return [ProcoreRow(r["procore_id"], r["name"], r["number"]) for r in rows]


async def project_of_cost_code(conn: asyncpg.Connection, account_id: str, procore_id: int) -> int | None:
    """The Procore project a synced cost code belongs to (two-way links carry only the code's id)."""
    value: int | None = await conn.fetchval(
        "SELECT procore_project_id FROM procore_entities WHERE account_id = $1 AND entity = 'cost_code'"
        " AND procore_id = $2 AND NOT gone LIMIT 1",
        account_id,
        procore_id,
    )
    return value


async def was_synced(conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity, project_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM sync_runs WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3",
            account_id,
            entity.value,
            project_id,
        )
    )


async def forget_procore_entities(conn: asyncpg.Connection, account_id: str) -> None:
    """The account now uses another Procore company: its synced lists and reports are someone else's."""
    for table in ("procore_entities", "sync_runs", "automap_reports"):
        await conn.execute(f"DELETE FROM {table} WHERE account_id = $1", account_id)


# --- reports and command outcomes ----------------------------------------------------------


async def save_automap_report(
    conn: asyncpg.Connection,
    account_id: str,
    entity: ProcoreEntity,
    requested_by: str | None,
    overwrite_manual: bool,
    counts: tuple[int, int, int],
    details: list[dict[str, Any]],
) -> None:
    await conn.execute(
        """
        INSERT INTO automap_reports (account_id, entity, requested_by, overwrite_manual, mapped, skipped, ambiguous,
                                     details)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (account_id, entity) DO UPDATE SET ran_at = now(), requested_by = EXCLUDED.requested_by,
            overwrite_manual = EXCLUDED.overwrite_manual, mapped = EXCLUDED.mapped, skipped = EXCLUDED.skipped,
            ambiguous = EXCLUDED.ambiguous, details = EXCLUDED.details
        """,
        account_id,
        entity.value,
        requested_by,
        overwrite_manual,
        *counts,
        details,
    )


async def is_finished(conn: asyncpg.Connection, command_id: UUID) -> bool:
    """The command has an outcome (its changes, if any, were written to the outbox with it)."""
    return bool(await conn.fetchval("SELECT true FROM command_outcomes WHERE command_id = $1", command_id))


async def record_outcome(
    conn: asyncpg.Connection,
    command_id: UUID,
    account_id: str,
    command_type: str,
    status: str,
    message: str | None,
    details: dict[str, Any] | None,
    requested_by: str | None,
    changes: list[dict[str, Any]] | None = None,
) -> bool:
    """Record the outcome once; False when the command already has one (it was handled meanwhile)."""
    status_tag = await conn.execute(
        """
        INSERT INTO command_outcomes (command_id, account_id, command_type, status, message, details, requested_by,
                                      changes)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (command_id) DO NOTHING
        """,
        command_id,
        account_id,
        command_type,
        status,
        message,
        details,
        requested_by,
        changes or [],
    )
    return bool(status_tag.endswith(" 1"))


# --- OAuth app (public half) ---------------------------------------------------------------


async def publish_oauth_app(conn: asyncpg.Connection, login_url: str, client_id: str) -> None:
    await conn.execute(
        """
        INSERT INTO oauth_app (singleton, login_url, client_id) VALUES (true, $1, $2)
        ON CONFLICT (singleton) DO UPDATE SET login_url = EXCLUDED.login_url, client_id = EXCLUDED.client_id,
            updated_at = now()
        """,
        login_url,
        client_id,
    )
