"""Remap marks (issue 11, tables `remap_marks`, `remap_rounds`): what a mapping change marks for the debounced
remap, and the marked entries a round re-checks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.aggregator.adapters import arrays
from services.aggregator.adapters.entries import LOCKED_COLUMNS, locked_row
from services.aggregator.adapters.timelogs import Group
from services.aggregator.domain import MODULE_DIMS, EntryRef, EntryState
from shared.events import Module

# --- remap marks (issue 11) --------------------------------------------------------------

Mark = tuple[str, str]
"""(dim, value): see `domain.remap_mark` and migration 011."""


async def mark_for_remap(conn: asyncpg.Connection, account_id: str, marks: Sequence[Mark]) -> None:
    """Mark what a mapping or setup change affects; marking again only moves the mark's quiet time (idempotent)."""
    if marks:
        await conn.execute(
            """
            INSERT INTO remap_marks (account_id, dim, value)
            SELECT $1, d, v FROM unnest($2::text[], $3::text[]) AS m(d, v) ORDER BY d, v
            ON CONFLICT (account_id, dim, value)
            DO UPDATE SET marked_at = now(), seq = nextval('remap_mark_seq')
            """,
            account_id,
            [m[0] for m in marks],
            [m[1] for m in marks],
        )


@dataclass(frozen=True)
class PendingMarks:
    marks: list[Mark]
    up_to_seq: int
    first_marked_at: datetime


async def pending_marks(conn: asyncpg.Connection, account_id: str) -> PendingMarks | None:
    rows = await conn.fetch(
        "SELECT dim, value, seq, first_marked_at FROM remap_marks WHERE account_id = $1", account_id
    )
    if not rows:
        return None
    return PendingMarks(
        [(r["dim"], r["value"]) for r in rows],
        max(r["seq"] for r in rows),
        min(r["first_marked_at"] for r in rows),
    )


async def has_remap_marks(conn: asyncpg.Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM remap_marks WHERE account_id = $1)", account_id))


async def due_remaps(conn: asyncpg.Connection, quiet_s: float, max_delay_s: float, limit: int) -> list[str]:
    """Accounts whose marks have been quiet for `quiet_s`, or whose oldest mark waited `max_delay_s`: oldest first."""
    rows = await conn.fetch(
        """
        SELECT account_id FROM remap_marks GROUP BY account_id
        HAVING max(marked_at) <= now() - make_interval(secs => $1)
            OR min(first_marked_at) <= now() - make_interval(secs => $2)
         ORDER BY min(first_marked_at)
         LIMIT $3
        """,
        quiet_s,
        max_delay_s,
        limit,
    )
    return [r["account_id"] for r in rows]


async def forget_marks(conn: asyncpg.Connection, account_id: str, up_to_seq: int) -> None:
    """The marks a round covered; one made again since (a higher seq) stays for the next round."""
    await conn.execute("DELETE FROM remap_marks WHERE account_id = $1 AND seq <= $2", account_id, up_to_seq)


async def groups_marked(conn: asyncpg.Connection, account_id: str, marks: Sequence[Mark]) -> list[tuple[Group, int]]:
    """The (job site, day) groups holding entries that a mark names, with how many, in one statement: one pass
    over the account's entries, each tested against the marks by hash (1,000 marks cost about what one does)."""
    rows = await conn.fetch(
        f"""
        WITH m AS (SELECT DISTINCT * FROM unnest($2::text[], $3::text[]) AS m(dim, value))
        SELECT e.job_site_id, e.work_date, count(*)::int AS n FROM entries e
         WHERE e.account_id = $1 AND ($4 OR {_MARKED})
         GROUP BY e.job_site_id, e.work_date
        """,
        account_id,
        [m[0] for m in marks],
        [m[1] for m in marks],
        ("*", "") in marks,
    )
    return sorted(((account_id, r["job_site_id"], r["work_date"]), r["n"]) for r in rows)


async def record_remap_round(
    conn: asyncpg.Connection, account_id: str, marks: int, groups: int, chunks: int, first: datetime, started: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO remap_rounds (account_id, marks, groups, chunks, first_marked_at, started_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        account_id,
        marks,
        groups,
        chunks,
        first,
        started,
    )
    await conn.execute("DELETE FROM remap_rounds WHERE finished_at < now() - interval '7 days'")


REVALIDATED_DIMS = ("job_site_id", "company_id", "employee_id", "pay_id", "cost_code_id", "pay_class_id")
"""The dimensions a remap mark can name (`domain.remap_mark`)."""


def _dim_column(dim: str) -> str:
    return f"e.{dim}" if dim == "job_site_id" else f"e.dims->>'{dim}'"


# one hashed IN per dimension: a chunk tests each entry against the marks by hash, however many marks there are
_MARKED = " OR ".join(f"('{d}', {_dim_column(d)}) IN (SELECT dim, value FROM m)" for d in REVALIDATED_DIMS)


@dataclass(frozen=True)
class MarkedEntry:
    """What re-checking an entry's errors needs: its identity, its quantity's units (production quantities) and its
    status."""

    entry_id: uuid.UUID
    ref: EntryRef
    content: dict[str, str]
    """The units of a production quantity (validation reads them); empty for the other modules."""
    state: EntryState


async def lock_marked_entries(
    conn: asyncpg.Connection, account_id: str, groups: Sequence[Group], marks: Sequence[Mark], modules: Iterable[Module]
) -> list[MarkedEntry]:
    """The entries of these groups of the enabled modules that a mark names (every one for `EVERY_ENTRY`), locked in
    id order; entries without content (every timelog gone) are not re-checked, as in the timelog path."""
    every = ("*", "") in marks
    rows = await conn.fetch(
        f"""
        WITH m AS (SELECT DISTINCT * FROM unnest($4::text[], $5::text[]) AS m(dim, value))
        SELECT {LOCKED_COLUMNS}, module, job_site_id, work_date, dims::text AS dims,
               CASE WHEN module = 'production_quantity' THEN content->>'units' END AS units
          FROM entries e
         WHERE e.account_id = $1
           AND (e.job_site_id, e.work_date) IN (SELECT * FROM unnest($2::text[], $3::date[]))
           AND e.module = ANY($6::text[]) AND e.content IS NOT NULL
           AND ($7 OR {_MARKED})
         ORDER BY e.entry_id
           FOR UPDATE OF e
        """,
        account_id,
        [g[1] for g in groups],
        [g[2] for g in groups],
        [m[0] for m in marks],
        [m[1] for m in marks],
        [m.value for m in modules],
        every,
    )
    out = []
    for r in rows:
        module = Module(r["module"])
        dims = json.loads(r["dims"])
        ref = EntryRef(module, r["job_site_id"], r["work_date"], tuple(dims.get(n) for n in MODULE_DIMS[module]))
        content = {"units": r["units"]} if r["units"] is not None else {}
        out.append(MarkedEntry(r["entry_id"], ref, content, locked_row(r).state))
    return out


async def save_entry_errors(conn: asyncpg.Connection, states: Sequence[tuple[uuid.UUID, EntryState]]) -> None:
    """A remap's write: the errors and what they settle (status, last error) of these entries, one statement."""
    if not states:
        return
    ordered = sorted(states, key=lambda u: u[0].int)
    await conn.execute(
        """
        UPDATE entries e SET status = x.st, errors = x.err::jsonb, last_error = x.le, updated_at = now()
          FROM unnest($1::text::uuid[], $2::text::text[], $3::text::text[], $4::text::text[]) AS x(id, st, err, le)
         WHERE e.entry_id = x.id
        """,
        arrays.uuids([u[0] for u in ordered]),
        arrays.texts([u[1].status.value for u in ordered]),
        arrays.texts([json.dumps(u[1].errors) if u[1].errors else "[]" for u in ordered]),
        arrays.texts([u[1].last_error for u in ordered]),
    )
