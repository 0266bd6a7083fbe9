"""Queries on the mapping service's read contract (setup, connection status, bound companies, synced Procore lists,
mappings, sync and auto-map reports, command outcomes).

The gateway reads only the views the mapping service publishes in `<MAPPING_SCHEMA>_read` (its migration 005), never
its tables: its role may not even see them (tokens and secrets live there). Read-only, in the caller's read-only
transaction; every view is qualified with the read schema and every query filters by account_id. Until the mapping
service has published its contract, everything reads as empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from shared.db import quote_ident, read_schema
from shared.events import Module


@dataclass(frozen=True)
class MappingSetup:
    procore_company_id: int | None
    enabled_modules: list[Module]
    two_way: bool


def _contract(schema: str) -> str:
    """The mapping service's read contract, quoted: `schema` is the mapping service's own schema."""
    return quote_ident(read_schema(schema))


async def ready(conn: asyncpg.Connection, schema: str) -> bool:
    """The mapping service has published its read contract (it has started at least once) and we may read it."""
    found = await conn.fetchval(
        "SELECT has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')"
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = 'command_outcomes'",
        read_schema(schema),
    )
    return found is True


async def setup(conn: asyncpg.Connection, schema: str, account_id: str) -> MappingSetup | None:
    if not await ready(conn, schema):
        return None
    r = await conn.fetchrow(
        f"SELECT procore_company_id, enabled_modules, two_way FROM {_contract(schema)}.setups WHERE account_id = $1",
        account_id,
    )
    if r is None:
        return None
    return MappingSetup(r["procore_company_id"], [Module(m) for m in r["enabled_modules"]], r["two_way"])


async def connection(conn: asyncpg.Connection, schema: str, account_id: str) -> dict[str, Any] | None:
    """The connection's status (the contract has no token or secret column)."""
    if not await ready(conn, schema):
        return None
    r = await conn.fetchrow(
        f"SELECT grant_type, status, message, connected_by, connected_at, refreshed_at, expires_at"
        f" FROM {_contract(schema)}.connection_status WHERE account_id = $1",
        account_id,
    )
    return dict(r.items()) if r is not None else None


@dataclass(frozen=True)
class BoundCompany:
    procore_company_id: int
    name: str
    is_active: bool
    proof: str


async def companies(conn: asyncpg.Connection, schema: str, account_id: str) -> list[BoundCompany]:
    """The Procore companies bound to the account (proven by it): the only ones it sees or may choose."""
    if not await ready(conn, schema):
        return []
    rows = await conn.fetch(
        f"SELECT procore_company_id, name, is_active, proof FROM {_contract(schema)}.bound_companies"
        " WHERE account_id = $1 ORDER BY name, procore_company_id",
        account_id,
    )
    return [BoundCompany(r["procore_company_id"], r["name"], r["is_active"], r["proof"]) for r in rows]


async def mapped_projects(conn: asyncpg.Connection, schema: str, account_id: str) -> list[tuple[int, str]]:
    """Procore projects at least one job site is (working) mapped to, with their synced names."""
    if not await ready(conn, schema):
        return []
    rows = await conn.fetch(
        f"""
        SELECT DISTINCT m.procore_id, coalesce(e.name, 'Procore project ' || m.procore_id) AS name
          FROM {_contract(schema)}.mappings m
          LEFT JOIN {_contract(schema)}.procore_entities e
            ON e.account_id = m.account_id AND e.entity = 'project' AND e.procore_project_id = 0
           AND e.procore_id = m.procore_id
         WHERE m.account_id = $1 AND m.entity = 'project' AND m.broken_reason IS NULL
         ORDER BY name, m.procore_id
        """,
        account_id,
    )
    return [(r["procore_id"], r["name"]) for r in rows]


async def tab_rows(
    conn: asyncpg.Connection, schema: str, account_id: str, entity: str, kind: str, project_id: int
) -> list[dict[str, Any]]:
    """Every live MobiClocks entity of the tab with its mapping (in one project for cost codes)."""
    rows = await conn.fetch(
        f"""
        SELECT r.entity_id AS mobiclocks_id, r.name, r.number, m.procore_id, m.source, m.broken_reason,
               e.name AS procore_name
          FROM {_contract(schema)}.reference_entities r
          LEFT JOIN {_contract(schema)}.mappings m
            ON m.account_id = r.account_id AND m.entity = $2 AND m.mobiclocks_id = r.entity_id
           AND m.procore_project_id = $4
          LEFT JOIN {_contract(schema)}.procore_entities e
            ON e.account_id = m.account_id AND e.entity = m.entity AND e.procore_project_id = m.procore_project_id
           AND e.procore_id = m.procore_id
         WHERE r.account_id = $1 AND r.kind = $3 AND NOT r.deleted
         ORDER BY lower(r.name), r.entity_id
        """,
        account_id,
        entity,
        kind,
        project_id,
    )
    return [dict(r.items()) for r in rows]


async def procore_options(
    conn: asyncpg.Connection, schema: str, account_id: str, entity: str, project_id: int, in_projects: list[int] | None
) -> list[tuple[int, str, str | None]]:
    """Live synced Procore entities of the tab; `in_projects` keeps company-wide ones and those of these projects."""
    rows = await conn.fetch(
        f"""
        SELECT procore_id, name, number FROM {_contract(schema)}.procore_entities
         WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3 AND NOT gone
           AND ($4::bigint[] IS NULL OR project_ids = '{{}}' OR project_ids && $4::bigint[])
         ORDER BY lower(name), procore_id
        """,
        account_id,
        entity,
        project_id,
        in_projects,
    )
    return [(r["procore_id"], r["name"], r["number"]) for r in rows]


async def last_sync(
    conn: asyncpg.Connection, schema: str, account_id: str, entity: str, project_id: int
) -> dict[str, Any] | None:
    r = await conn.fetchrow(
        f"SELECT procore_project_id, synced_at, total, added, updated, gone FROM {_contract(schema)}.sync_runs"
        " WHERE account_id = $1 AND entity = $2 AND procore_project_id = $3",
        account_id,
        entity,
        project_id,
    )
    return dict(r.items()) if r is not None else None


async def last_auto_map(conn: asyncpg.Connection, schema: str, account_id: str, entity: str) -> dict[str, Any] | None:
    r = await conn.fetchrow(
        f"SELECT ran_at, requested_by, overwrite_manual, mapped, skipped, ambiguous, details"
        f" FROM {_contract(schema)}.automap_reports WHERE account_id = $1 AND entity = $2",
        account_id,
        entity,
    )
    return dict(r.items()) if r is not None else None


@dataclass(frozen=True)
class Outcome:
    command_type: str
    status: str
    message: str | None
    details: dict[str, Any] | None
    finished_at: datetime


async def command_outcome(conn: asyncpg.Connection, schema: str, account_id: str, command_id: UUID) -> Outcome | None:
    if not await ready(conn, schema):
        return None
    r = await conn.fetchrow(
        f"SELECT command_type, status, message, details, finished_at FROM {_contract(schema)}.command_outcomes"
        " WHERE command_id = $1 AND account_id = $2",
        command_id,
        account_id,
    )
    if r is None:
        return None
    return Outcome(r["command_type"], r["status"], r["message"], r["details"], r["finished_at"])
