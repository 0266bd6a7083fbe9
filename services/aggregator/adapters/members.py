"""Who an entry holds (table `entry_members`, and the timelogs behind each entry when it is published)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.aggregator.adapters import arrays
from services.aggregator.adapters.entries import LockedEntry, StoredEntry
from services.aggregator.domain import MODULE_DIMS
from shared.events import Module


async def load_members(conn: asyncpg.Connection, entries: dict[uuid.UUID, LockedEntry]) -> None:
    """Fill in the per-employee timelog counts of the manpower entries among these (in place)."""
    if not entries:
        return
    rows = await conn.fetch(
        "SELECT entry_id, employee_id, timelogs FROM entry_members WHERE entry_id = ANY($1::uuid[])", list(entries)
    )
    for r in rows:
        entries[r["entry_id"]].totals.members[r["employee_id"]] = r["timelogs"]


async def save_member_changes(conn: asyncpg.Connection, changes: Sequence[tuple[uuid.UUID, str, int]]) -> None:
    """(entry, employee, timelogs) rows; 0 removes the member."""
    upserts = [c for c in changes if c[2] > 0]
    removals = [c for c in changes if c[2] <= 0]
    if upserts:
        await conn.execute(
            """
            INSERT INTO entry_members (entry_id, employee_id, timelogs)
            SELECT * FROM unnest($1::text::uuid[], $2::text::text[], $3::text::int[])
            ON CONFLICT (entry_id, employee_id) DO UPDATE SET timelogs = EXCLUDED.timelogs
            """,
            arrays.uuids([c[0] for c in upserts]),
            arrays.texts([c[1] for c in upserts]),
            arrays.numbers([c[2] for c in upserts]),
        )
    if removals:
        await conn.execute(
            """
            DELETE FROM entry_members m USING unnest($1::uuid[], $2::text[]) AS r(entry_id, employee_id)
             WHERE m.entry_id = r.entry_id AND m.employee_id = r.employee_id
            """,
            [c[0] for c in removals],
            [c[1] for c in removals],
        )


_MEMBERS_SQL: dict[Module, str] = {
    Module.MANPOWER: """
        SELECT k.i, t.timelog_id
          FROM unnest($1::int[], $2::text[], $3::text[], $4::date[], $5::text[], $6::text[])
               AS k(i, account_id, job_site_id, work_date, d1, d2)
          JOIN timelogs t ON t.account_id = k.account_id AND t.job_site_id = k.job_site_id
               AND t.work_date = k.work_date AND NOT t.deleted
               AND t.company_id = k.d1 AND t.crew_tag IS NOT DISTINCT FROM k.d2
    """,
    Module.TIMECARD: """
        SELECT k.i, t.timelog_id
          FROM unnest($1::int[], $2::text[], $3::text[], $4::date[], $5::text[], $6::text[], $7::text[], $8::text[])
               AS k(i, account_id, job_site_id, work_date, d1, d2, d3, d4)
          JOIN timelogs t ON t.account_id = k.account_id AND t.job_site_id = k.job_site_id
               AND t.work_date = k.work_date AND NOT t.deleted
               AND t.employee_id = k.d1 AND t.pay_id = k.d2
               AND t.cost_code_id IS NOT DISTINCT FROM k.d3 AND t.pay_class_id IS NOT DISTINCT FROM k.d4
    """,
    Module.PRODUCTION_QUANTITY: """
        SELECT k.i, t.timelog_id
          FROM unnest($1::int[], $2::text[], $3::text[], $4::date[], $5::text[], $6::text[])
               AS k(i, account_id, job_site_id, work_date, d1, d2)
          JOIN timelogs t ON t.account_id = k.account_id AND t.job_site_id = k.job_site_id
               AND t.work_date = k.work_date AND NOT t.deleted
               AND EXISTS (SELECT 1 FROM jsonb_array_elements(t.quantities) q WHERE q->>0 = k.d1 AND q->>1 = k.d2)
    """,
}


async def timelog_ids_of(conn: asyncpg.Connection, entries: Sequence[StoredEntry]) -> list[frozenset[str]]:
    """The timelogs each entry holds now (asked when entries are published): one statement per module."""
    found: list[set[str]] = [set() for _ in entries]
    for module, sql in _MEMBERS_SQL.items():
        picked = [(i, e) for i, e in enumerate(entries) if e.module is module]
        if not picked:
            continue
        columns: list[list[Any]] = [
            [i for i, _ in picked],
            [e.account_id for _, e in picked],
            [e.job_site_id for _, e in picked],
            [e.work_date for _, e in picked],
        ]
        for n in range(len(MODULE_DIMS[module])):
            columns.append([e.ref.dims[n] for _, e in picked])
        for r in await conn.fetch(sql, *columns):
            found[r["i"]].add(r["timelog_id"])
    return [frozenset(ids) for ids in found]


async def clock_spans_of(
    conn: asyncpg.Connection, account_id: str, members: Sequence[frozenset[str]]
) -> list[list[tuple[datetime | None, datetime | None]]]:
    """Each member set's (clock_in, clock_out) per timelog, for timecard publish requests: one statement."""
    index = [i for i, ids in enumerate(members) for _ in ids]
    ids = [t for group in members for t in group]
    out: list[list[tuple[datetime | None, datetime | None]]] = [[] for _ in members]
    if not ids:
        return out
    rows = await conn.fetch(
        """
        SELECT m.i, t.clock_in, t.clock_out
          FROM unnest($2::int[], $3::text[]) AS m(i, timelog_id)
          JOIN timelogs t ON t.account_id = $1 AND t.timelog_id = m.timelog_id
        """,
        account_id,
        index,
        ids,
    )
    for r in rows:
        out[r["i"]].append((r["clock_in"], r["clock_out"]))
    return out
