"""Queries on the mapping service's read contract (setup, connection status, bound companies, synced Procore lists,
mappings, sync and auto-map reports, command outcomes).

The gateway reads only the views the mapping service publishes in `<MAPPING_SCHEMA>_read` (its migration 005), never
its tables: its role may not even see them (tokens and secrets live there). Read-only, in the caller's read-only
transaction; every view is qualified with the read schema and every query filters by account_id. Until the mapping
service has published its contract, everything reads as empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from shared import labels
from shared.db import quote_ident, read_schema
from shared.events import Module


@dataclass(frozen=True)
class MappingSetup:
    procore_company_id: int | None
    enabled_modules: list[Module]
    two_way: bool
    auto_publish: dict[Module, int] = field(default_factory=dict)


def _contract(schema: str) -> str:
    """The mapping service's read contract, quoted: `schema` is the mapping service's own schema."""
    return quote_ident(read_schema(schema))


_published: set[str] = set()
"""Mapping schemas whose read contract this process has seen published: a contract, once there, stays."""


async def ready(conn: asyncpg.Connection, schema: str) -> bool:
    """The mapping service has published its read contract (it has started at least once) and we may read it
    (asked of the catalog until it is, remembered after)."""
    if schema in _published:
        return True
    found = await conn.fetchval(
        "SELECT has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')"
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = 'command_outcomes'",
        read_schema(schema),
    )
    if found is True:
        _published.add(schema)
    return found is True


async def setup(conn: asyncpg.Connection, schema: str, account_id: str) -> MappingSetup | None:
    if not await ready(conn, schema):
        return None
    r = await conn.fetchrow(
        f"SELECT procore_company_id, enabled_modules, two_way, to_jsonb(s)->'auto_publish' AS auto_publish"
        f" FROM {_contract(schema)}.setups s WHERE account_id = $1",
        account_id,
    )
    if r is None:
        return None
    # to_jsonb: a mapping service from before auto-publish has no such column (null here, not an error)
    auto = {Module(m): int(n) for m, n in (r["auto_publish"] or {}).items()}
    return MappingSetup(r["procore_company_id"], [Module(m) for m in r["enabled_modules"]], r["two_way"], auto)


async def procore_connection(conn: asyncpg.Connection, schema: str, account_id: str) -> dict[str, Any] | None:
    """The connection's status (the contract has no token or secret column)."""
    if not await ready(conn, schema):
        return None
    r = await conn.fetchrow(
        f"SELECT grant_type, status, message, connected_by, connected_at, refreshed_at, expires_at"
        f" FROM {_contract(schema)}.connection_status WHERE account_id = $1",
        account_id,
    )
    return dict(r.items()) if r is not None else None


async def webhook_status(
    conn: asyncpg.Connection, schema: str, account_id: str, company_id: int
) -> dict[str, Any] | None:
    """Procore's webhooks for the chosen company: registered when, last delivery, last reconcile (None: none)."""
    try:
        r = await conn.fetchrow(
            f"SELECT registered_at, last_delivery_at, reconciled_until FROM {_contract(schema)}.webhook_status"
            " WHERE account_id = $1 AND procore_company_id = $2",
            account_id,
            company_id,
        )
    except asyncpg.UndefinedTableError:  # a mapping service older than this contract
        return None
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
        SELECT DISTINCT m.procore_id, coalesce(e.name, $2) AS name
          FROM {_contract(schema)}.mappings m
          LEFT JOIN {_contract(schema)}.procore_entities e
            ON e.account_id = m.account_id AND e.entity = 'project' AND e.procore_project_id = 0
           AND e.procore_id = m.procore_id
         WHERE m.account_id = $1 AND m.entity = 'project' AND m.broken_reason IS NULL
         ORDER BY name, m.procore_id
        """,
        account_id,
        labels.NAME_AFTER_SYNC,
    )
    return [(r["procore_id"], r["name"]) for r in rows]


async def tab_rows(
    conn: asyncpg.Connection, schema: str, account_id: str, entity: str, kind: str, project_id: int
) -> list[dict[str, Any]]:
    """Every live MobiClocks entity of the tab with its mapping (in one project for cost codes)."""
    rows = await conn.fetch(
        f"""
        SELECT r.entity_id AS mobiclocks_id, r.name, r.number, m.procore_id, m.source, m.broken_reason,
               CASE WHEN m.procore_id IS NOT NULL THEN coalesce(e.name, $5) END AS procore_name
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
        labels.NAME_AFTER_SYNC,
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


async def manual_mappings(conn: asyncpg.Connection, schema: str, account_id: str) -> int:
    """How many mappings were made by hand (turning two-way on replaces them with the linked ids)."""
    if not await ready(conn, schema):
        return 0
    n = await conn.fetchval(
        f"SELECT count(*) FROM {_contract(schema)}.mappings"
        " WHERE account_id = $1 AND source = 'manual' AND procore_id IS NOT NULL",
        account_id,
    )
    return int(n or 0)


DIRECTORY_WINDOW_DAYS = 120
"""Timecards on a project in the last this many days make a person expected in its directory."""


async def directory_gaps(
    conn: asyncpg.Connection, schema: str, aggregator_schema: str, account_id: str
) -> dict[str, list[str]]:
    """MobiClocks employee id → names of the mapped Procore projects where the employee has timecard entries
    (recent ones) but whose directory, as last synced, lacks the Procore person the employee is mapped to."""
    mapping, entries = _contract(schema), quote_ident(read_schema(aggregator_schema))
    rows = await conn.fetch(
        f"""
        WITH worked AS (
            SELECT DISTINCT e.dims->>'employee_id' AS employee_id, m.procore_id AS project_id
              FROM {entries}.entries e
              JOIN {mapping}.mappings m
                ON m.account_id = e.account_id AND m.entity = 'project' AND m.mobiclocks_id = e.job_site_id
               AND m.procore_project_id = 0 AND m.broken_reason IS NULL
             WHERE e.account_id = $1 AND e.module = 'timecard' AND e.work_date >= current_date - $2::int)
        SELECT w.employee_id, coalesce(p.name, 'project ' || w.project_id) AS project_name
          FROM worked w
          JOIN {mapping}.mappings em
            ON em.account_id = $1 AND em.entity = 'employee' AND em.mobiclocks_id = w.employee_id
           AND em.procore_project_id = 0 AND em.broken_reason IS NULL
          JOIN {mapping}.project_directories d ON d.account_id = $1 AND d.procore_project_id = w.project_id
          LEFT JOIN {mapping}.procore_entities p
            ON p.account_id = $1 AND p.entity = 'project' AND p.procore_project_id = 0 AND p.procore_id = w.project_id
         WHERE NOT (em.procore_id = ANY (d.person_ids))
         ORDER BY w.employee_id, project_name
        """,
        account_id,
        DIRECTORY_WINDOW_DAYS,
    )
    gaps: dict[str, list[str]] = {}
    for r in rows:
        gaps.setdefault(r["employee_id"], []).append(r["project_name"])
    return gaps
