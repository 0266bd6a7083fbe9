"""Queries on the aggregator's read contract (entries, publish history, names, mappings, setups).

The gateway reads only the views the aggregator publishes in `<AGGREGATOR_SCHEMA>_read` (its migration 006),
never its tables, which its role may not even see: the pool's search_path is that read schema, and every query
runs in a read-only transaction the caller opened. Every query filters by account_id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from services.gateway.domain import EntryRecord, HistoryRecord, Name, QuantityGroup, StatusGroup
from services.gateway.views import EntryStatus, Setup
from shared.events import CellScope, DateRangeScope, EntriesScope, Module

_ENTRY_COLUMNS = (
    "entry_id, module, job_site_id, work_date, dims, content, status, errors, last_error, version,"
    " procore_id, updated_at"
)


def _statuses(statuses: Sequence[EntryStatus]) -> list[str] | None:
    return [s.value for s in statuses] or None


async def status_groups(
    conn: asyncpg.Connection,
    account_id: str,
    module: Module,
    date_from: date,
    date_to: date,
    statuses: Sequence[EntryStatus],
) -> list[StatusGroup]:
    """Per cell and status: entry count, head count and hours (manpower), timecards (timecard)."""
    rows = await conn.fetch(
        """
        SELECT job_site_id, work_date, status, count(*) AS entries,
               coalesce(sum((content->>'manpower')::int), 0) AS manpower,
               coalesce(sum((content->>'total_hours')::numeric), 0) AS total_hours,
               count(*) FILTER (WHERE content IS NOT NULL AND content <> 'null'::jsonb) AS timecards
          FROM entries
         WHERE account_id = $1 AND module = $2 AND work_date BETWEEN $3 AND $4
           AND ($5::text[] IS NULL OR status = ANY($5::text[]))
         GROUP BY job_site_id, work_date, status
        """,
        account_id,
        module.value,
        date_from,
        date_to,
        _statuses(statuses),
    )
    return [
        StatusGroup(
            job_site_id=r["job_site_id"],
            work_date=r["work_date"],
            status=EntryStatus(r["status"]),
            entries=r["entries"],
            manpower=r["manpower"],
            total_hours=r["total_hours"],
            timecards=r["timecards"],
        )
        for r in rows
    ]


async def quantity_groups(
    conn: asyncpg.Connection,
    account_id: str,
    date_from: date,
    date_to: date,
    statuses: Sequence[EntryStatus],
) -> list[QuantityGroup]:
    """Production quantity per cell, cost code and unit of measure."""
    rows = await conn.fetch(
        """
        SELECT job_site_id, work_date, dims->>'cost_code_id' AS cost_code_id,
               dims->>'unit_of_measure' AS unit, sum((content->>'units')::numeric) AS units
          FROM entries
         WHERE account_id = $1 AND module = 'production_quantity' AND work_date BETWEEN $2 AND $3
           AND content IS NOT NULL AND content <> 'null'::jsonb
           AND ($4::text[] IS NULL OR status = ANY($4::text[]))
         GROUP BY 1, 2, 3, 4
        """,
        account_id,
        date_from,
        date_to,
        _statuses(statuses),
    )
    return [
        QuantityGroup(
            job_site_id=r["job_site_id"],
            work_date=r["work_date"],
            cost_code_id=r["cost_code_id"],
            unit=r["unit"],
            units=r["units"] if r["units"] is not None else Decimal(0),
        )
        for r in rows
    ]


async def reference_names(
    conn: asyncpg.Connection, account_id: str, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Name]:
    pairs = sorted(set(wanted))
    if not pairs:
        return {}
    rows = await conn.fetch(
        """
        SELECT kind, entity_id, name, number FROM reference_names
         WHERE account_id = $1
           AND (kind, entity_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))
        """,
        account_id,
        [k for k, _ in pairs],
        [i for _, i in pairs],
    )
    return {(r["kind"], r["entity_id"]): Name(r["name"], r["number"]) for r in rows}


async def payroll_items(conn: asyncpg.Connection, account_id: str, pay_ids: Iterable[str]) -> dict[str, str]:
    """Pay ID → the name of the Procore payroll type it is mapped to."""
    ids = sorted(set(pay_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        """
        SELECT mobiclocks_id, coalesce(procore_name, 'Procore payroll type ' || procore_id) AS name
          FROM mappings
         WHERE account_id = $1 AND entity = 'payroll_type' AND procore_project_id = 0
           AND procore_id IS NOT NULL AND mobiclocks_id = ANY($2::text[])
        """,
        account_id,
        ids,
    )
    return {r["mobiclocks_id"]: r["name"] for r in rows}


def _entry(r: asyncpg.Record) -> EntryRecord:
    content: Any = r["content"]
    return EntryRecord(
        entry_id=r["entry_id"],
        module=Module(r["module"]),
        job_site_id=r["job_site_id"],
        work_date=r["work_date"],
        dims=dict(r["dims"] or {}),
        content=dict(content) if content else None,
        status=EntryStatus(r["status"]),
        errors=tuple(r["errors"] or ()),
        last_error=r["last_error"],
        version=r["version"],
        procore_id=r["procore_id"],
        updated_at=r["updated_at"],
    )


async def cell_entries(
    conn: asyncpg.Connection, account_id: str, module: Module, job_site_id: str, work_date: date
) -> list[EntryRecord]:
    rows = await conn.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM entries"
        " WHERE account_id = $1 AND module = $2 AND job_site_id = $3 AND work_date = $4",
        account_id,
        module.value,
        job_site_id,
        work_date,
    )
    return [_entry(r) for r in rows]


async def entry(conn: asyncpg.Connection, account_id: str, entry_id: UUID) -> EntryRecord | None:
    r = await conn.fetchrow(
        f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE account_id = $1 AND entry_id = $2", account_id, entry_id
    )
    return _entry(r) if r is not None else None


async def publish_history(conn: asyncpg.Connection, entry_id: UUID) -> list[HistoryRecord]:
    rows = await conn.fetch(
        "SELECT at, action, request_id, requested_by, outcome, message FROM publish_history"
        " WHERE entry_id = $1 ORDER BY at, id",
        entry_id,
    )
    return [
        HistoryRecord(
            at=r["at"],
            action=r["action"],
            request_id=r["request_id"],
            requested_by=r["requested_by"],
            outcome=r["outcome"],
            message=r["message"],
        )
        for r in rows
    ]


async def status_counts_in_scope(
    conn: asyncpg.Connection,
    account_id: str,
    module: Module,
    scope: CellScope | EntriesScope | DateRangeScope,
) -> dict[EntryStatus, int]:
    """How many of the account's entries of `module` a publish scope covers, per status."""
    base = "SELECT status, count(*) AS n FROM entries WHERE account_id = $1 AND module = $2"
    args: list[Any] = [account_id, module.value]
    if isinstance(scope, CellScope):
        sql = f"{base} AND job_site_id = $3 AND work_date = $4"
        args += [scope.job_site_id, scope.work_date]
    elif isinstance(scope, EntriesScope):
        sql = f"{base} AND entry_id = ANY($3::uuid[])"
        args.append(list(scope.entry_ids))
    else:
        sql = f"{base} AND work_date BETWEEN $3 AND $4"
        args += [scope.date_from, scope.date_to]
    rows = await conn.fetch(f"{sql} GROUP BY status", *args)
    return {EntryStatus(r["status"]): r["n"] for r in rows}


async def job_sites_of_entries(
    conn: asyncpg.Connection, account_id: str, module: Module, entry_ids: Sequence[UUID]
) -> dict[UUID, str]:
    """entry id → job site, for those of `entry_ids` that are the account's entries of `module`."""
    rows = await conn.fetch(
        "SELECT entry_id, job_site_id FROM entries"
        " WHERE account_id = $1 AND module = $2 AND entry_id = ANY($3::uuid[])",
        account_id,
        module.value,
        list(entry_ids),
    )
    return {r["entry_id"]: r["job_site_id"] for r in rows}


async def setup(conn: asyncpg.Connection, account_id: str) -> Setup:
    r = await conn.fetchrow(
        "SELECT procore_company_id, enabled_modules, two_way FROM setups WHERE account_id = $1", account_id
    )
    if r is None:
        return Setup(procore_company_id=None, enabled_modules=[], two_way=False)
    return Setup(
        procore_company_id=r["procore_company_id"],
        enabled_modules=[Module(m) for m in r["enabled_modules"]],
        two_way=r["two_way"],
    )


async def ping(conn: asyncpg.Connection) -> bool:
    return await conn.fetchval("SELECT true") is True
