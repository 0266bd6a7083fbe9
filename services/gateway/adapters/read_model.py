"""Queries on the aggregator's read contract (entries, publish history, names, mappings, setups).

The gateway reads only the views the aggregator publishes in `<AGGREGATOR_SCHEMA>_read` (its migration 006),
never its tables, which its role may not even see: the pool's search_path is that read schema, and every query
runs in a read-only transaction the caller opened — but `cell`, one statement that is its own snapshot. Every query
filters by account_id.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from services.gateway.dashboard import QuantityGroup, StatusGroup
from services.gateway.details import NAMED_DIMS, CellRead, EntryRecord, HistoryRecord
from services.gateway.force_preview import Reviewed
from services.gateway.names import Name
from services.gateway.schemas import EntryStatus, Setup
from shared import labels
from shared.db import quote_ident, read_schema
from shared.events import CellScope, DateRangeScope, EntriesScope, Module, ReferenceKind

_ENTRY_COLUMNS = (
    "entry_id, module, job_site_id, work_date, dims, content, status, errors, last_error, version,"
    " procore_id, updated_at, published_payload, procore_updated_at"
)


def _statuses(statuses: Sequence[EntryStatus]) -> list[str] | None:
    return [s.value for s in statuses] or None


async def plan_for_week(conn: asyncpg.Connection) -> None:
    """A week view groups tens of thousands of entries in one statement: keep its hash aggregate in memory (the
    default 4 MB spills a big account's week to disk) and skip JIT compiling (~9 ms a query, for one that runs in
    tens of ms). Transaction-local."""
    await conn.execute("SET LOCAL jit = off; SET LOCAL work_mem = '32MB'")


async def week_job_sites(
    conn: asyncpg.Connection,
    account_id: str,
    module: Module,
    date_from: date,
    date_to: date,
    statuses: Sequence[EntryStatus],
) -> list[str]:
    """The job sites with entries of `module` (with these statuses) in the days: an index-only read of
    `entries_grid` (aggregator migration 015)."""
    rows = await conn.fetch(
        """
        SELECT DISTINCT job_site_id FROM entries
         WHERE account_id = $1 AND module = $2 AND work_date BETWEEN $3 AND $4
           AND ($5::text[] IS NULL OR status = ANY($5::text[]))
        """,
        account_id,
        module.value,
        date_from,
        date_to,
        _statuses(statuses),
    )
    return [r["job_site_id"] for r in rows]


def _cells_of(job_site_ids: Sequence[str] | None, param: int) -> str:
    """The entries of a week query, joined to the page's job sites (parameter `$param`) when there is a page: a hash
    join costs ~0.3 µs per index entry of the week, where `job_site_id = ANY(array)` compares each one with every
    job site of the page (a week of 37 k entries, a page of 50 job sites: 37 ms against 12)."""
    if job_site_ids is None:
        return "entries"
    return f"entries JOIN unnest(${param}::text[]) AS page(job_site_id) USING (job_site_id)"


def _page_args(job_site_ids: Sequence[str] | None) -> list[list[str]]:
    return [] if job_site_ids is None else [list(job_site_ids)]


async def status_groups(
    conn: asyncpg.Connection,
    account_id: str,
    module: Module,
    date_from: date,
    date_to: date,
    statuses: Sequence[EntryStatus],
    job_site_ids: Sequence[str] | None = None,
) -> list[StatusGroup]:
    """Per cell and status: entry count, head count and hours (manpower), timecards (timecard); only the cells of
    `job_site_ids` when given. An index-only read of the aggregator's `entries_grid` (migration 015: the grid's
    numbers are generated columns the index carries); conflicts are counted among the Failed entries alone."""
    sites = None if job_site_ids is None else list(job_site_ids)
    rows = await conn.fetch(
        """
        SELECT job_site_id, work_date, status, count(*) AS entries,
               coalesce(sum(grid_workers), 0) AS manpower,
               coalesce(sum(grid_hours), 0) AS total_hours,
               count(*) FILTER (WHERE grid_has_content) AS timecards
          FROM """
        + _cells_of(sites, 6)
        + """
         WHERE account_id = $1 AND module = $2 AND work_date BETWEEN $3 AND $4
           AND ($5::text[] IS NULL OR status = ANY($5::text[]))
         GROUP BY job_site_id, work_date, status
        """,
        account_id,
        module.value,
        date_from,
        date_to,
        _statuses(statuses),
        *_page_args(sites),
    )
    conflicts: dict[tuple[str, date], int] = {}
    if any(r["status"] == EntryStatus.FAILED.value for r in rows):
        conflicts = await _conflicts(conn, account_id, module, date_from, date_to, sites)
    return [
        StatusGroup(
            r["job_site_id"],
            r["work_date"],
            EntryStatus(r["status"]),
            r["entries"],
            conflicts.get((r["job_site_id"], r["work_date"]), 0) if r["status"] == EntryStatus.FAILED.value else 0,
            r["manpower"],
            r["total_hours"],
            r["timecards"],
        )
        for r in rows
    ]


async def _conflicts(
    conn: asyncpg.Connection,
    account_id: str,
    module: Module,
    date_from: date,
    date_to: date,
    job_site_ids: list[str] | None,
) -> dict[tuple[str, date], int]:
    """Failed entries whose last error says Procore's record changed since it was published, per cell (an
    index-only read of the aggregator's partial index of Failed entries)."""
    rows = await conn.fetch(
        """
        SELECT job_site_id, work_date, count(*) AS conflicts
          FROM """
        + _cells_of(job_site_ids, 6)
        + """
         WHERE account_id = $1 AND module = $2 AND work_date BETWEEN $3 AND $4 AND status = 'failed'
           AND last_error = ANY($5::text[])
         GROUP BY job_site_id, work_date
        """,
        account_id,
        module.value,
        date_from,
        date_to,
        list(labels.CONFLICT_ADVICES),
        *_page_args(job_site_ids),
    )
    return {(r["job_site_id"], r["work_date"]): r["conflicts"] for r in rows}


async def quantity_groups(
    conn: asyncpg.Connection,
    account_id: str,
    date_from: date,
    date_to: date,
    statuses: Sequence[EntryStatus],
    job_site_ids: Sequence[str] | None = None,
) -> list[QuantityGroup]:
    """Production quantity per cell, cost code and unit of measure (only the cells of `job_site_ids` when given):
    an index-only read of `entries_grid`, like the status groups."""
    rows = await conn.fetch(
        """
        SELECT job_site_id, work_date, grid_cost_code_id AS cost_code_id, grid_unit AS unit,
               sum(grid_units) AS units
          FROM """
        + _cells_of(job_site_ids, 5)
        + """
         WHERE account_id = $1 AND module = 'production_quantity' AND work_date BETWEEN $2 AND $3
           AND grid_has_content
           AND ($4::text[] IS NULL OR status = ANY($4::text[]))
         GROUP BY 1, 2, 3, 4
        """,
        account_id,
        date_from,
        date_to,
        _statuses(statuses),
        *_page_args(job_site_ids),
    )
    return [
        QuantityGroup(
            r["job_site_id"],
            r["work_date"],
            r["cost_code_id"],
            r["unit"],
            r["units"] if r["units"] is not None else Decimal(0),
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


def _payroll_types(mapping_schema: str | None, pay_ids: str, label: str) -> str:
    """A query: (pay ID, name) of the Procore payroll type each of `pay_ids` (SQL giving them) is mapped to — as the
    mapping said it, else from the synced Procore list (the mapping service's read contract), else `label` ("Mapped
    (sync to see the name)"), never a raw id. Without that contract (the service not started yet) only the names the
    mappings carry are known."""
    synced = (
        f"SELECT e.name FROM {quote_ident(read_schema(mapping_schema))}.procore_entities e"
        " WHERE e.account_id = m.account_id AND e.entity = 'payroll_type' AND e.procore_id = m.procore_id LIMIT 1"
        if mapping_schema is not None
        else "SELECT NULL::text AS name"
    )
    return f"""
        SELECT m.mobiclocks_id, coalesce(m.procore_name, p.name, {label}) AS name
          FROM mappings m
          LEFT JOIN LATERAL ({synced}) p ON true
         WHERE m.account_id = $1 AND m.entity = 'payroll_type' AND m.procore_project_id = 0
           AND m.procore_id IS NOT NULL AND m.mobiclocks_id IN ({pay_ids})
    """


async def payroll_items(
    conn: asyncpg.Connection, account_id: str, pay_ids: Iterable[str], mapping_schema: str | None
) -> dict[str, str]:
    """Pay ID → the name of the Procore payroll type it is mapped to (`_payroll_types`)."""
    ids = sorted(set(pay_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        _payroll_types(mapping_schema, "SELECT unnest($2::text[])", "$3"), account_id, ids, labels.NAME_AFTER_SYNC
    )
    return {r["mobiclocks_id"]: r["name"] for r in rows}


async def mapped_projects(conn: asyncpg.Connection, account_id: str, job_site_ids: Iterable[str]) -> dict[str, int]:
    """Job site → the Procore project it is mapped to (cost codes are mapped per project)."""
    ids = sorted(set(job_site_ids))
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT mobiclocks_id, procore_id FROM mappings"
        " WHERE account_id = $1 AND entity = 'project' AND procore_project_id = 0 AND procore_id IS NOT NULL"
        " AND mobiclocks_id = ANY($2::text[])",
        account_id,
        ids,
    )
    return {r["mobiclocks_id"]: r["procore_id"] for r in rows}


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
        published_payload=dict(r["published_payload"]) if r["published_payload"] else None,
        procore_updated_at=r["procore_updated_at"],
    )


@functools.cache
def _cell_query(mapping_schema: str | None) -> str:
    """The entries of one cell; its first row also carries the names they show, the payroll types of their pay IDs
    and the job site's project: one statement, one round trip (`cell`)."""
    payroll_types = _payroll_types(mapping_schema, "SELECT dims->>'pay_id' FROM cell", "$8")
    return f"""
    WITH cell AS MATERIALIZED (
        SELECT {_ENTRY_COLUMNS} FROM entries
         WHERE account_id = $1 AND module = $2 AND job_site_id = $3 AND work_date = $4
    ), wanted AS (
        SELECT k.kind, d.value AS entity_id
          FROM cell, jsonb_each_text(cell.dims) AS d, unnest($5::text[], $6::text[]) AS k(dim, kind)
         WHERE d.key = k.dim
        UNION SELECT $7, $3
    ), names AS (
        SELECT array_agg(r.kind) AS name_kinds, array_agg(r.entity_id) AS name_ids, array_agg(r.name) AS names,
               array_agg(r.number) AS numbers
          FROM reference_names r JOIN wanted w ON r.kind = w.kind AND r.entity_id = w.entity_id
         WHERE r.account_id = $1
    ), payroll AS (
        SELECT array_agg(t.mobiclocks_id) AS pay_ids, array_agg(t.name) AS payroll_types FROM ({payroll_types}) t
    ), project AS (
        SELECT max(procore_id) AS project_id FROM mappings
         WHERE account_id = $1 AND entity = 'project' AND procore_project_id = 0 AND procore_id IS NOT NULL
           AND mobiclocks_id = $3
    )
    SELECT c.*, x.*
      FROM (SELECT cell.*, row_number() OVER () AS nth FROM cell) c
      LEFT JOIN (SELECT * FROM names, payroll, project) x ON c.nth = 1
    """


async def cell(
    conn: asyncpg.Connection,
    account_id: str,
    module: Module,
    job_site_id: str,
    work_date: date,
    mapping_schema: str | None,
) -> CellRead:
    """What the details of one cell show (`CellRead`), in one statement: its own snapshot."""
    rows = await conn.fetch(
        _cell_query(mapping_schema),
        account_id,
        module.value,
        job_site_id,
        work_date,
        list(NAMED_DIMS),
        [kind.value for kind in NAMED_DIMS.values()],
        ReferenceKind.JOB_SITE.value,
        labels.NAME_AFTER_SYNC,
    )
    if not rows:
        return CellRead([], {}, {}, {})
    first = rows[0]
    names = {
        (kind, entity_id): Name(name, number)
        for kind, entity_id, name, number in zip(
            first["name_kinds"] or (),
            first["name_ids"] or (),
            first["names"] or (),
            first["numbers"] or (),
            strict=True,
        )
    }
    payroll = dict(zip(first["pay_ids"] or (), first["payroll_types"] or (), strict=True))
    project = first["project_id"]
    return CellRead([_entry(r) for r in rows], names, payroll, {job_site_id: project} if project is not None else {})


async def entry(conn: asyncpg.Connection, account_id: str, entry_id: UUID) -> EntryRecord | None:
    r = await conn.fetchrow(
        f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE account_id = $1 AND entry_id = $2", account_id, entry_id
    )
    return _entry(r) if r is not None else None


async def publish_history(conn: asyncpg.Connection, entry_id: UUID) -> list[HistoryRecord]:
    rows = await conn.fetch(
        "SELECT at, action, request_id, requested_by, outcome, message, trace_id FROM publish_history"
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
            trace_id=r["trace_id"],
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
    where, args = _in_scope(account_id, module, scope)
    rows = await conn.fetch(f"SELECT status, count(*) AS n FROM entries WHERE {where} GROUP BY status", *args)
    return {EntryStatus(r["status"]): r["n"] for r in rows}


def _in_scope(
    account_id: str, module: Module, scope: CellScope | EntriesScope | DateRangeScope
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments $1…) of the account's entries of `module` that a publish scope covers."""
    base = "account_id = $1 AND module = $2"
    args: list[Any] = [account_id, module.value]
    if isinstance(scope, CellScope):
        return f"{base} AND job_site_id = $3 AND work_date = $4", [*args, scope.job_site_id, scope.work_date]
    if isinstance(scope, EntriesScope):
        return f"{base} AND entry_id = ANY($3::uuid[])", [*args, list(scope.entry_ids)]
    return f"{base} AND work_date BETWEEN $3 AND $4", [*args, scope.date_from, scope.date_to]


async def entries_in_scope(
    conn: asyncpg.Connection,
    account_id: str,
    module: Module,
    scope: CellScope | EntriesScope | DateRangeScope,
    statuses: Iterable[EntryStatus],
    limit: int,
) -> list[EntryRecord]:
    """The entries with these statuses a publish scope covers (at most `limit`; the caller refuses more)."""
    where, args = _in_scope(account_id, module, scope)
    n = len(args)
    rows = await conn.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE {where} AND status = ANY(${n + 1}::text[])"
        f" ORDER BY work_date, job_site_id, entry_id LIMIT ${n + 2}",
        *args,
        sorted(s.value for s in statuses),
        limit,
    )
    return [_entry(r) for r in rows]


async def reviewed_in_scope(
    conn: asyncpg.Connection,
    account_id: str,
    module: Module,
    scope: CellScope | EntriesScope | DateRangeScope,
    statuses: Iterable[EntryStatus],
) -> list[Reviewed]:
    """The entries with these statuses a publish scope covers, as a force publish preview binds them."""
    where, args = _in_scope(account_id, module, scope)
    n = len(args)
    rows = await conn.fetch(
        f"SELECT entry_id, version, procore_id FROM entries WHERE {where} AND status = ANY(${n + 1}::text[])",
        *args,
        sorted(s.value for s in statuses),
    )
    return [Reviewed(r["entry_id"], r["version"], r["procore_id"]) for r in rows]


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
