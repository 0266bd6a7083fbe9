"""The stored timelogs (table `timelogs`): their revisions, and what the entries of (job site, day) groups add up
to from them, computed in SQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg

from services.aggregator.adapters import arrays
from services.aggregator.domain import MODULE_DIMS, EntryRef, Timelog, Totals
from shared.events import Module, TimelogDeleted, TimelogUpserted

Group = tuple[str, str, date]  # (account_id, job_site_id, work_date)


# --- timelogs --------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTimelog:
    revision: int
    timelog: Timelog | None
    """None for a tombstone (a deleted timelog)."""


def _timelog(r: asyncpg.Record) -> Timelog:
    return Timelog(
        timelog_id=r["timelog_id"],
        employee_id=r["employee_id"],
        company_id=r["company_id"],
        crew_tag=r["crew_tag"],
        job_site_id=r["job_site_id"],
        work_date=r["work_date"],
        seconds=r["seconds"],
        cost_code_id=r["cost_code_id"],
        pay_class_id=r["pay_class_id"],
        pay_id=r["pay_id"],
        quantities=tuple((c, u, Decimal(n)) for c, u, n in r["quantities"]),
    )


async def lock_timelogs(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], StoredTimelog]:
    """The stored state of these (account, timelog) ids, locked for this transaction."""
    rows = await conn.fetch(
        """
        SELECT t.* FROM timelogs t
          JOIN unnest($1::text::text[], $2::text::text[]) AS k(account_id, timelog_id)
            ON t.account_id = k.account_id AND t.timelog_id = k.timelog_id
         ORDER BY t.account_id, t.timelog_id
           FOR UPDATE OF t
        """,
        arrays.texts([k[0] for k in keys]),
        arrays.texts([k[1] for k in keys]),
    )
    return {
        (r["account_id"], r["timelog_id"]): StoredTimelog(r["revision"], None if r["deleted"] else _timelog(r))
        for r in rows
    }


_TIMELOG_ARRAYS: tuple[Callable[[Any], str], ...] = (
    arrays.texts,
    arrays.texts,
    arrays.numbers,
    arrays.booleans,
    arrays.texts,
    arrays.texts,
    arrays.texts,
    arrays.texts,
    arrays.dates,
    arrays.numbers,
    arrays.texts,
    arrays.texts,
    arrays.texts,
    arrays.texts,
    arrays.texts,
    arrays.texts,
)


def timelog_arrays(events: Sequence[TimelogUpserted | TimelogDeleted]) -> list[str]:
    """`timelog_columns` as array literals (see `arrays`), for `_INSERT_TIMELOGS`."""
    return [to_array(column) for to_array, column in zip(_TIMELOG_ARRAYS, timelog_columns(events), strict=True)]


def timelog_columns(events: Sequence[TimelogUpserted | TimelogDeleted]) -> list[list[Any]]:
    """The 16 column arrays of the timelog rows these events leave (a delete leaves a tombstone)."""
    if not events:
        return [[] for _ in range(16)]
    return [list(column) for column in zip(*map(_timelog_row, events), strict=True)]


def _timelog_row(e: TimelogUpserted | TimelogDeleted) -> tuple[Any, ...]:
    if isinstance(e, TimelogUpserted):
        quantities = (
            json.dumps([[q.cost_code_id, q.unit_of_measure, str(q.units)] for q in e.quantities])
            if e.quantities
            else "[]"
        )
        return (
            e.account_id,
            e.timelog_id,
            e.revision,
            False,
            e.employee_id,
            e.company_id,
            e.crew_tag,
            e.job_site_id,
            e.work_date,
            e.seconds,
            e.cost_code_id,
            e.pay_class_id,
            e.pay_id,
            quantities,
            e.clock_in and e.clock_in.isoformat(),
            e.clock_out and e.clock_out.isoformat(),
        )
    return (e.account_id, e.timelog_id, e.revision, True, *([None] * 9), "[]", None, None)


_INSERT_TIMELOGS = """
    INSERT INTO timelogs (account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag,
                          job_site_id, work_date, seconds, cost_code_id, pay_class_id, pay_id, quantities,
                          clock_in, clock_out)
    SELECT a, t, r, d, emp, co, crew, site, day, sec, cc, pc, pay, q::jsonb, cin, cout
      FROM unnest($1::text::text[], $2::text::text[], $3::text::bigint[], $4::text::bool[], $5::text::text[],
                  $6::text::text[], $7::text::text[], $8::text::text[], $9::text::date[], $10::text::int[],
                  $11::text::text[], $12::text::text[], $13::text::text[], $14::text::text[],
                  $15::text::timestamptz[], $16::text::timestamptz[])
           AS x(a, t, r, d, emp, co, crew, site, day, sec, cc, pc, pay, q, cin, cout)
"""


async def insert_new_timelogs(
    conn: asyncpg.Connection, events: Sequence[TimelogUpserted | TimelogDeleted]
) -> set[tuple[str, str]]:
    """Store the timelogs not stored yet, as these events leave them; returns the (account, timelog) keys inserted.

    This claims a timelog nobody has stored before by its identity: a concurrent transaction inserting
    the same timelog waits on the unique index until this one ends, then finds the row (and locks it)
    instead of applying its change on top of "nothing" a second time. Rows go in key order, so two
    batches claim shared keys in the same order."""
    ordered = sorted(events, key=lambda e: (e.account_id, e.timelog_id))
    rows = await conn.fetch(
        f"{_INSERT_TIMELOGS} ON CONFLICT (account_id, timelog_id) DO NOTHING RETURNING account_id, timelog_id",
        *timelog_arrays(ordered),
    )
    return {(r["account_id"], r["timelog_id"]) for r in rows}


async def upsert_timelogs(conn: asyncpg.Connection, events: Sequence[TimelogUpserted | TimelogDeleted]) -> None:
    """Write the newest state of each timelog in one statement; a delete leaves a tombstone with its revision."""
    await conn.execute(
        f"""
        {_INSERT_TIMELOGS}
        ON CONFLICT (account_id, timelog_id) DO UPDATE SET
            revision = EXCLUDED.revision, deleted = EXCLUDED.deleted, employee_id = EXCLUDED.employee_id,
            company_id = EXCLUDED.company_id, crew_tag = EXCLUDED.crew_tag, job_site_id = EXCLUDED.job_site_id,
            work_date = EXCLUDED.work_date, seconds = EXCLUDED.seconds, cost_code_id = EXCLUDED.cost_code_id,
            pay_class_id = EXCLUDED.pay_class_id, pay_id = EXCLUDED.pay_id, quantities = EXCLUDED.quantities,
            clock_in = EXCLUDED.clock_in, clock_out = EXCLUDED.clock_out, updated_at = now()
        WHERE timelogs.revision < EXCLUDED.revision
        """,
        *timelog_arrays(events),
    )


async def timelogs_of_groups(conn: asyncpg.Connection, groups: Iterable[Group]) -> dict[Group, list[Timelog]]:
    gs = sorted(set(groups))
    rows = await conn.fetch(
        """
        SELECT t.* FROM timelogs t
          JOIN unnest($1::text[], $2::text[], $3::date[]) AS g(account_id, job_site_id, work_date)
            ON t.account_id = g.account_id AND t.job_site_id = g.job_site_id AND t.work_date = g.work_date
         WHERE NOT t.deleted
        """,
        [g[0] for g in gs],
        [g[1] for g in gs],
        [g[2] for g in gs],
    )
    out: dict[Group, list[Timelog]] = {g: [] for g in gs}
    for r in rows:
        out[(r["account_id"], r["job_site_id"], r["work_date"])].append(_timelog(r))
    return out


_GROUPS_TIMELOGS = """
WITH g AS (
    SELECT DISTINCT * FROM unnest($1::text[], $2::text[], $3::date[]) AS g(account_id, job_site_id, work_date)
),
t AS (
    SELECT t.* FROM timelogs t
      JOIN g ON t.account_id = g.account_id AND t.job_site_id = g.job_site_id AND t.work_date = g.work_date
     WHERE NOT t.deleted
),
crew AS (
    SELECT account_id, job_site_id, work_date, company_id, crew_tag, employee_id, count(*) AS n, sum(seconds) AS s
      FROM t WHERE 'manpower' = ANY($4::text[])
     GROUP BY account_id, job_site_id, work_date, company_id, crew_tag, employee_id
)
"""
"""The groups ($1, $2, $3: account, job site, day), their live timelogs (`t`) and manpower's per-employee crews
(`crew`, when $4, the enabled modules, holds manpower): the start of both from-scratch queries below."""

_TOTALS_OF_GROUPS = (
    _GROUPS_TIMELOGS
    + """
SELECT 'manpower' AS module, account_id, job_site_id, work_date, company_id AS d1, crew_tag AS d2, NULL AS d3,
       NULL AS d4, sum(s)::bigint AS seconds, 0::numeric AS units, sum(n)::int AS n,
       array_agg(employee_id) AS members, array_agg(n::int) AS member_timelogs
  FROM crew GROUP BY account_id, job_site_id, work_date, company_id, crew_tag
UNION ALL
SELECT 'timecard', account_id, job_site_id, work_date, employee_id, pay_id, cost_code_id, pay_class_id,
       sum(seconds)::bigint, 0::numeric, count(*)::int, NULL, NULL
  FROM t WHERE 'timecard' = ANY($4::text[])
 GROUP BY account_id, job_site_id, work_date, employee_id, pay_id, cost_code_id, pay_class_id
UNION ALL
SELECT 'production_quantity', t.account_id, t.job_site_id, t.work_date, q->>0, q->>1, NULL, NULL, 0::bigint,
       sum((q->>2)::numeric), count(*)::int, NULL, NULL
  FROM t CROSS JOIN LATERAL jsonb_array_elements(t.quantities) q
 WHERE 'production_quantity' = ANY($4::text[])
 GROUP BY t.account_id, t.job_site_id, t.work_date, q->>0, q->>1
"""
)


async def totals_of_groups(
    conn: asyncpg.Connection, groups: Iterable[Group], modules: Iterable[Module]
) -> dict[tuple[str, EntryRef], Totals]:
    """From scratch, in SQL: what each entry of the enabled modules in these groups adds up to (its timelogs now).

    Equal to `domain.aggregate` of the groups' timelogs (the property tests hold them to it)."""
    gs = sorted(set(groups))
    rows = await conn.fetch(
        _TOTALS_OF_GROUPS,
        [g[0] for g in gs],
        [g[1] for g in gs],
        [g[2] for g in gs],
        [m.value for m in modules],
    )
    out: dict[tuple[str, EntryRef], Totals] = {}
    for r in rows:
        module = Module(r["module"])
        dims = (r["d1"], r["d2"]) if module is not Module.TIMECARD else (r["d1"], r["d2"], r["d3"], r["d4"])
        members = dict(zip(r["members"], r["member_timelogs"], strict=True)) if r["members"] is not None else {}
        ref = EntryRef(module, r["job_site_id"], r["work_date"], dims)
        out[(r["account_id"], ref)] = Totals(r["seconds"], r["units"], r["n"], members)
    return out


_DIM_NAMES = sorted({name for names in MODULE_DIMS.values() for name in names})

_CHANGED_OF_GROUPS = (
    _GROUPS_TIMELOGS
    + """,
now AS (
    SELECT 'manpower' AS module, account_id, job_site_id, work_date,
           jsonb_build_object('company_id', company_id, 'crew_tag', crew_tag) AS dims, sum(s)::bigint AS seconds,
           0::numeric AS units, sum(n)::int AS n, jsonb_object_agg(employee_id, n) AS members,
           array_agg(employee_id) AS member_ids, array_agg(n::int) AS member_timelogs
      FROM crew GROUP BY account_id, job_site_id, work_date, company_id, crew_tag
    UNION ALL
    SELECT 'timecard', account_id, job_site_id, work_date,
           jsonb_build_object('employee_id', employee_id, 'pay_id', pay_id, 'cost_code_id', cost_code_id,
                              'pay_class_id', pay_class_id),
           sum(seconds)::bigint, 0::numeric, count(*)::int, NULL, NULL, NULL
      FROM t WHERE 'timecard' = ANY($4::text[])
     GROUP BY account_id, job_site_id, work_date, employee_id, pay_id, cost_code_id, pay_class_id
    UNION ALL
    SELECT 'production_quantity', t.account_id, t.job_site_id, t.work_date,
           jsonb_build_object('cost_code_id', q->>0, 'unit_of_measure', q->>1), 0::bigint, sum((q->>2)::numeric),
           count(*)::int, NULL, NULL, NULL
      FROM t CROSS JOIN LATERAL jsonb_array_elements(t.quantities) q
     WHERE 'production_quantity' = ANY($4::text[])
     GROUP BY t.account_id, t.job_site_id, t.work_date, q->>0, q->>1
),
stored AS (
    SELECT e.entry_id, e.account_id, e.module, e.job_site_id, e.work_date, e.dims, e.seconds, e.units,
           e.contributions,
           (SELECT jsonb_object_agg(m.employee_id, m.timelogs) FROM entry_members m WHERE m.entry_id = e.entry_id)
               AS members
      FROM entries e
      JOIN g ON e.account_id = g.account_id AND e.job_site_id = g.job_site_id AND e.work_date = g.work_date
     WHERE e.module = ANY($4::text[])
)
SELECT coalesce(n.account_id, s.account_id) AS account_id, coalesce(n.module, s.module) AS module,
       coalesce(n.job_site_id, s.job_site_id) AS job_site_id, coalesce(n.work_date, s.work_date) AS work_date,
       {dims}, n.seconds, n.units, n.n, n.member_ids,
       n.member_timelogs, s.entry_id
  FROM now n FULL JOIN stored s
    ON n.account_id = s.account_id AND n.module = s.module AND n.job_site_id = s.job_site_id
   AND n.work_date = s.work_date AND n.dims = s.dims
 WHERE n.account_id IS NULL OR s.entry_id IS NULL OR n.seconds <> s.seconds OR n.units <> s.units
    OR n.n <> s.contributions OR n.members IS DISTINCT FROM s.members
""".replace("{dims}", ", ".join(f"coalesce(n.dims, s.dims)->>'{name}' AS {name}" for name in _DIM_NAMES))
)


async def changed_totals_of_groups(
    conn: asyncpg.Connection, groups: Iterable[Group], modules: Iterable[Module]
) -> list[tuple[str, EntryRef, Totals, uuid.UUID | None]]:
    """From scratch, in SQL, compared with the stored entries: (account, entry, its totals now, its stored id) of
    just the entries of these groups whose stored totals differ (missing ones included, with no id; entries no
    timelog counts towards any more come with empty totals)."""
    gs = sorted(set(groups))
    rows = await conn.fetch(
        _CHANGED_OF_GROUPS, [g[0] for g in gs], [g[1] for g in gs], [g[2] for g in gs], [m.value for m in modules]
    )
    out = []
    for r in rows:
        module = Module(r["module"])
        ref = EntryRef(module, r["job_site_id"], r["work_date"], tuple(r[n] for n in MODULE_DIMS[module]))
        totals = Totals()
        if r["n"] is not None:
            ids = r["member_ids"]
            members = dict(zip(ids, r["member_timelogs"], strict=True)) if ids is not None else {}
            totals = Totals(r["seconds"], r["units"], r["n"], members)
        out.append((r["account_id"], ref, totals, r["entry_id"]))
    return out


async def groups_of_account(conn: asyncpg.Connection, account_id: str) -> list[Group]:
    rows = await conn.fetch(
        """
        SELECT DISTINCT job_site_id, work_date FROM timelogs WHERE account_id = $1 AND NOT deleted
        UNION SELECT DISTINCT job_site_id, work_date FROM entries WHERE account_id = $1
        """,
        account_id,
    )
    return [(account_id, r["job_site_id"], r["work_date"]) for r in rows]


async def all_accounts(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT account_id FROM timelogs UNION SELECT account_id FROM entries")
    return [r["account_id"] for r in rows]
