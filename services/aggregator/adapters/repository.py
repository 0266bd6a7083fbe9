"""PostgreSQL access for the aggregator. Takes a connection; the caller owns the transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.aggregator.domain import MODULE_DIMS, EntryRef, EntryState, Status, Timelog, Totals
from shared.events import Module, ProcoreEntity, PublishEntries, ReferenceKind, TimelogDeleted, TimelogUpserted
from shared.outbox import OutboxMessage

Group = tuple[str, str, date]  # (account_id, job_site_id, work_date)


@dataclass(frozen=True)
class StoredEntry:
    entry_id: uuid.UUID
    account_id: str
    module: Module
    job_site_id: str
    work_date: date
    entry_key: str
    dims: dict[str, str | None]
    content: dict[str, str] | None
    state: EntryState
    procore_updated_at: datetime | None
    published_payload: dict[str, Any] | None
    totals: Totals = field(default_factory=Totals)

    @property
    def ref(self) -> EntryRef:
        names = MODULE_DIMS[self.module]
        return EntryRef(self.module, self.job_site_id, self.work_date, tuple(self.dims.get(n) for n in names))


def _frozen(values: Sequence[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _entry(row: asyncpg.Record) -> StoredEntry:
    state = EntryState(
        status=Status(row["status"]),
        fingerprint=row["fingerprint"],
        version=row["version"],
        errors=tuple(row["errors"]),
        last_error=row["last_error"],
        procore_id=row["procore_id"],
        published_fingerprint=row["published_fingerprint"],
        published_timelog_ids=_frozen(row["published_timelog_ids"]),
        publishing_request_id=row["publishing_request_id"],
        publishing_fingerprint=row["publishing_fingerprint"],
        publishing_timelog_ids=_frozen(row["publishing_timelog_ids"]),
        deleted_timelog_ids=frozenset(row["deleted_timelog_ids"]),
    )
    return StoredEntry(
        entry_id=row["entry_id"],
        account_id=row["account_id"],
        module=Module(row["module"]),
        job_site_id=row["job_site_id"],
        work_date=row["work_date"],
        entry_key=row["entry_key"],
        dims=row["dims"],
        content=row["content"],
        state=state,
        procore_updated_at=row["procore_updated_at"],
        published_payload=row["published_payload"],
        totals=Totals(seconds=row["seconds"], units=row["units"], contributions=row["contributions"]),
    )


# --- account locks ---------------------------------------------------------------------

ACCOUNT_LOCKS = 32
"""A timelog batch from up to this many accounts takes one shared lock per account."""
ACCOUNT_BUCKETS = 64
"""A batch from more accounts takes shared locks on buckets of accounts instead: no batch holds more than
this many advisory locks (PostgreSQL's shared lock table holds max_locks_per_transaction times max_connections
for everyone, and a batch of 2,000 events can come from 2,000 accounts)."""
_BUCKETS_SPACE = 0x61676772
"""The first key of the two-key advisory locks on account buckets."""


async def lock_accounts_shared(conn: asyncpg.Connection, accounts: Sequence[str]) -> None:
    """What a timelog batch holds so that no from-scratch recompute of these accounts runs at the same time."""
    if len(accounts) <= ACCOUNT_LOCKS:
        await conn.execute(
            "SELECT pg_advisory_xact_lock_shared(hashtext('aggregate:' || a)) FROM unnest($1::text[]) a ORDER BY a",
            list(accounts),
        )
        return
    await conn.execute(
        """
        SELECT pg_advisory_xact_lock_shared($2, b)
          FROM (SELECT DISTINCT hashtext(a) & $3 AS b FROM unnest($1::text[]) a) buckets
         ORDER BY b
        """,
        list(accounts),
        _BUCKETS_SPACE,
        ACCOUNT_BUCKETS - 1,
    )


async def lock_account(conn: asyncpg.Connection, account_id: str) -> None:
    """The exclusive lock of a from-scratch recompute of an account: on the account and on its bucket, so it
    excludes batches of few accounts and batches of many alike (always in this order)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('aggregate:' || $1::text))", account_id)
    await conn.execute(
        "SELECT pg_advisory_xact_lock($2, hashtext($1::text) & $3)", account_id, _BUCKETS_SPACE, ACCOUNT_BUCKETS - 1
    )


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
          JOIN unnest($1::text[], $2::text[]) AS k(account_id, timelog_id)
            ON t.account_id = k.account_id AND t.timelog_id = k.timelog_id
         ORDER BY t.account_id, t.timelog_id
           FOR UPDATE OF t
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {
        (r["account_id"], r["timelog_id"]): StoredTimelog(r["revision"], None if r["deleted"] else _timelog(r))
        for r in rows
    }


def _timelog_columns(events: Sequence[TimelogUpserted | TimelogDeleted]) -> list[list[Any]]:
    """The 14 column arrays of the timelog rows these events leave (a delete leaves a tombstone)."""
    columns: list[list[Any]] = [[] for _ in range(14)]
    for e in events:
        if isinstance(e, TimelogUpserted):
            row: tuple[Any, ...] = (
                e.account_id, e.timelog_id, e.revision, False, e.employee_id, e.company_id, e.crew_tag,
                e.job_site_id, e.work_date, e.seconds, e.cost_code_id, e.pay_class_id, e.pay_id,
                json.dumps([[q.cost_code_id, q.unit_of_measure, str(q.units)] for q in e.quantities]),
            )  # fmt: skip
        else:
            row = (e.account_id, e.timelog_id, e.revision, True, *([None] * 9), "[]")
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


_INSERT_TIMELOGS = """
    INSERT INTO timelogs (account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag,
                          job_site_id, work_date, seconds, cost_code_id, pay_class_id, pay_id, quantities)
    SELECT a, t, r, d, emp, co, crew, site, day, sec, cc, pc, pay, q::jsonb
      FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[], $5::text[], $6::text[], $7::text[],
                  $8::text[], $9::date[], $10::int[], $11::text[], $12::text[], $13::text[], $14::text[])
           AS x(a, t, r, d, emp, co, crew, site, day, sec, cc, pc, pay, q)
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
        *_timelog_columns(ordered),
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
            updated_at = now()
        WHERE timelogs.revision < EXCLUDED.revision
        """,
        *_timelog_columns(events),
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


# --- entries ---------------------------------------------------------------------------


async def lock_entries_of_groups(conn: asyncpg.Connection, groups: Iterable[Group]) -> list[StoredEntry]:
    gs = sorted(set(groups))
    rows = await conn.fetch(
        """
        SELECT e.* FROM entries e
          JOIN unnest($1::text[], $2::text[], $3::date[]) AS g(account_id, job_site_id, work_date)
            ON e.account_id = g.account_id AND e.job_site_id = g.job_site_id AND e.work_date = g.work_date
         ORDER BY e.entry_id
           FOR UPDATE OF e
        """,
        [g[0] for g in gs],
        [g[1] for g in gs],
        [g[2] for g in gs],
    )
    return [_entry(r) for r in rows]


async def lock_entries_in_scope(conn: asyncpg.Connection, cmd: PublishEntries) -> list[StoredEntry]:
    """The entries a publish command names (a cell, a list, or a date range of one module), locked."""
    scope = cmd.scope
    base = "account_id = $1 AND module = $2"
    args: list[object] = [cmd.account_id, cmd.module.value]
    if scope.kind == "cell":
        return await lock_entries(
            conn, f"{base} AND job_site_id = $3 AND work_date = $4", *args, scope.job_site_id, scope.work_date
        )
    if scope.kind == "entries":
        return await lock_entries(conn, f"{base} AND entry_id = ANY($3::uuid[])", *args, list(scope.entry_ids))
    return await lock_entries(conn, f"{base} AND work_date BETWEEN $3 AND $4", *args, scope.date_from, scope.date_to)


async def lock_entries(conn: asyncpg.Connection, where: str, *args: Any) -> list[StoredEntry]:
    rows = await conn.fetch(f"SELECT * FROM entries WHERE {where} ORDER BY entry_id FOR UPDATE", *args)
    return [_entry(r) for r in rows]


_ENTRY_COLUMNS = (
    "entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content, fingerprint, contributions,"
    " status, version, errors, last_error, published_fingerprint, published_timelog_ids, procore_id,"
    " procore_updated_at, published_payload, publishing_request_id, publishing_fingerprint, publishing_timelog_ids,"
    " deleted_timelog_ids, seconds, units"
)
_ENTRY_VALUES = (
    "$1, $2, $3, $4, $5, $6, $7::text::jsonb, $8::text::jsonb, $9, $10, $11, $12, $13::text::jsonb, $14, $15, $16,"
    " $17, $18, $19::text::jsonb, $20, $21, $22, $23, $24, $25"
)


def _entry_row(e: StoredEntry) -> tuple[Any, ...]:
    s = e.state
    return (
        e.entry_id, e.account_id, e.module.value, e.job_site_id, e.work_date, e.entry_key, json.dumps(e.dims),
        None if e.content is None else json.dumps(e.content), s.fingerprint, e.totals.contributions, s.status.value,
        s.version, json.dumps(s.errors) if s.errors else "[]", s.last_error, s.published_fingerprint,
        None if s.published_timelog_ids is None else sorted(s.published_timelog_ids), s.procore_id,
        e.procore_updated_at, None if e.published_payload is None else json.dumps(e.published_payload),
        s.publishing_request_id, s.publishing_fingerprint,
        None if s.publishing_timelog_ids is None else sorted(s.publishing_timelog_ids),
        sorted(s.deleted_timelog_ids), e.totals.seconds, e.totals.units,
    )  # fmt: skip


async def create_entries(conn: asyncpg.Connection, entries: Sequence[StoredEntry]) -> set[uuid.UUID]:
    """Insert new entries in one statement (in id order); returns the ids inserted.

    An entry missing from the answer was created by a concurrent writer (this insert waited for it
    to commit): the caller locks it and applies its change on top."""
    if not entries:
        return set()
    columns: list[list[Any]] = [[] for _ in range(15)]
    for e in sorted(entries, key=lambda e: e.entry_id):
        row = (
            e.entry_id, e.account_id, e.module.value, e.job_site_id, e.work_date, e.entry_key, json.dumps(e.dims),
            None if e.content is None else json.dumps(e.content), e.state.fingerprint, e.totals.contributions,
            e.state.status.value, e.state.version, json.dumps(e.state.errors) if e.state.errors else "[]",
            e.totals.seconds, e.totals.units,
        )  # fmt: skip
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    rows = await conn.fetch(
        """
        INSERT INTO entries (entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content,
                             fingerprint, contributions, status, version, errors, seconds, units)
        SELECT e, a, m, s, d, k, dims::jsonb, c::jsonb, f, n, st, v, err::jsonb, sec, u
          FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::date[], $6::text[], $7::text[],
                      $8::text[], $9::text[], $10::int[], $11::text[], $12::int[], $13::text[], $14::bigint[],
                      $15::numeric[]) AS x(e, a, m, s, d, k, dims, c, f, n, st, v, err, sec, u)
        ON CONFLICT (entry_id) DO NOTHING
        RETURNING entry_id
        """,
        *columns,
    )
    return {r["entry_id"] for r in rows}


async def save_entries(conn: asyncpg.Connection, entries: Sequence[StoredEntry]) -> None:
    if not entries:
        return
    await conn.executemany(
        f"""
        INSERT INTO entries ({_ENTRY_COLUMNS}) VALUES ({_ENTRY_VALUES})
        ON CONFLICT (entry_id) DO UPDATE SET
            content = EXCLUDED.content, fingerprint = EXCLUDED.fingerprint,
            contributions = EXCLUDED.contributions, seconds = EXCLUDED.seconds, units = EXCLUDED.units,
            status = EXCLUDED.status, version = EXCLUDED.version, errors = EXCLUDED.errors,
            last_error = EXCLUDED.last_error, published_fingerprint = EXCLUDED.published_fingerprint,
            published_timelog_ids = EXCLUDED.published_timelog_ids, procore_id = EXCLUDED.procore_id,
            procore_updated_at = EXCLUDED.procore_updated_at, published_payload = EXCLUDED.published_payload,
            publishing_request_id = EXCLUDED.publishing_request_id,
            publishing_fingerprint = EXCLUDED.publishing_fingerprint,
            publishing_timelog_ids = EXCLUDED.publishing_timelog_ids,
            deleted_timelog_ids = EXCLUDED.deleted_timelog_ids, updated_at = now()
        """,
        [_entry_row(e) for e in entries],
    )


async def update_entry_totals(conn: asyncpg.Connection, entries: Sequence[StoredEntry]) -> None:
    """The timelog path's write of existing entries: totals, content and status only (publish state unchanged)."""
    if not entries:
        return
    await conn.executemany(
        """
        UPDATE entries SET content = $2::text::jsonb, fingerprint = $3, contributions = $4, seconds = $5, units = $6,
               status = $7, version = $8, errors = $9::text::jsonb, last_error = $10, deleted_timelog_ids = $11,
               updated_at = now()
         WHERE entry_id = $1
        """,
        [
            (
                e.entry_id, None if e.content is None else json.dumps(e.content), e.state.fingerprint,
                e.totals.contributions, e.totals.seconds, e.totals.units, e.state.status.value, e.state.version,
                json.dumps(e.state.errors) if e.state.errors else "[]", e.state.last_error,
                sorted(e.state.deleted_timelog_ids),
            )
            for e in entries
        ],
    )  # fmt: skip


async def delete_entries(conn: asyncpg.Connection, entry_ids: Sequence[uuid.UUID]) -> None:
    if entry_ids:
        await conn.execute("DELETE FROM entries WHERE entry_id = ANY($1::uuid[])", list(entry_ids))
        await conn.execute("DELETE FROM entry_members WHERE entry_id = ANY($1::uuid[])", list(entry_ids))


async def lock_entries_by_id(conn: asyncpg.Connection, entry_ids: Sequence[uuid.UUID]) -> list[StoredEntry]:
    rows = await conn.fetch(
        "SELECT * FROM entries WHERE entry_id = ANY($1::uuid[]) ORDER BY entry_id FOR UPDATE", list(entry_ids)
    )
    return [_entry(r) for r in rows]


async def lock_entries_published_with(
    conn: asyncpg.Connection, account_ids: Sequence[str], timelog_ids: Sequence[str]
) -> list[StoredEntry]:
    """Entries that were published (or are being published) with any of these timelogs."""
    rows = await conn.fetch(
        """
        SELECT * FROM entries WHERE entry_id IN (
            SELECT entry_id FROM entries
             WHERE published_timelog_ids IS NOT NULL AND published_timelog_ids && $2::text[]
               AND account_id = ANY($1::text[])
            UNION
            SELECT entry_id FROM entries
             WHERE publishing_timelog_ids IS NOT NULL AND publishing_timelog_ids && $2::text[]
               AND account_id = ANY($1::text[]))
         ORDER BY entry_id FOR UPDATE
        """,
        list(account_ids),
        list(timelog_ids),
    )
    return [_entry(r) for r in rows]


async def load_members(conn: asyncpg.Connection, entries: Sequence[StoredEntry]) -> None:
    """Fill in the per-employee timelog counts of manpower entries (in place)."""
    ids = [e.entry_id for e in entries if e.module is Module.MANPOWER]
    if not ids:
        return
    by_id = {e.entry_id: e for e in entries}
    rows = await conn.fetch(
        "SELECT entry_id, employee_id, timelogs FROM entry_members WHERE entry_id = ANY($1::uuid[])", ids
    )
    for r in rows:
        by_id[r["entry_id"]].totals.members[r["employee_id"]] = r["timelogs"]


async def save_member_changes(conn: asyncpg.Connection, changes: Sequence[tuple[uuid.UUID, str, int]]) -> None:
    """(entry, employee, timelogs) rows; 0 removes the member."""
    upserts = [c for c in changes if c[2] > 0]
    removals = [c for c in changes if c[2] <= 0]
    if upserts:
        await conn.execute(
            """
            INSERT INTO entry_members (entry_id, employee_id, timelogs)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[])
            ON CONFLICT (entry_id, employee_id) DO UPDATE SET timelogs = EXCLUDED.timelogs
            """,
            [c[0] for c in upserts],
            [c[1] for c in upserts],
            [c[2] for c in upserts],
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


async def add_history(
    conn: asyncpg.Connection,
    rows: Sequence[tuple[uuid.UUID, uuid.UUID | None, str, str | None, str | None, str | None]],
) -> None:
    """(entry_id, request_id, action, requested_by, outcome, message) rows."""
    if rows:
        await conn.executemany(
            "INSERT INTO publish_history (entry_id, request_id, action, requested_by, outcome, message)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            rows,
        )


# --- publish requests waiting for a result ---------------------------------------------


@dataclass(frozen=True)
class QueuedPublish:
    """A publish request an entry waits on, exactly as it went to the outbox."""

    entry_id: uuid.UUID
    request_id: uuid.UUID
    message: OutboxMessage


@dataclass(frozen=True)
class DuePublish:
    """A queued publish request whose result is overdue (locked by the sweeper that claimed it)."""

    entry_id: uuid.UUID
    request_id: uuid.UUID
    message: OutboxMessage | None
    """None for a request queued before requests were kept: it is rebuilt from the entry."""
    redrives: int
    waited_s: float
    current: bool
    """False when the entry no longer waits on this request (its result came, or it was published again)."""


async def keep_publish_requests(
    conn: asyncpg.Connection, queued: Sequence[QueuedPublish], redrive_after_s: float
) -> None:
    """Remember the request each entry now waits on (replacing an older one), due for a re-drive after the timeout."""
    if not queued:
        return
    await conn.execute(
        """
        INSERT INTO publish_requests (entry_id, request_id, topic, key, payload, headers, redrive_at)
        SELECT e, r, t, k, p::jsonb, h::jsonb, now() + make_interval(secs => $7)
          FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[]) AS x(e, r, t, k, p, h)
        ON CONFLICT (entry_id) DO UPDATE SET
            request_id = EXCLUDED.request_id, topic = EXCLUDED.topic, key = EXCLUDED.key, payload = EXCLUDED.payload,
            headers = EXCLUDED.headers, queued_at = now(), redrives = 0, redrive_at = EXCLUDED.redrive_at
        """,
        [q.entry_id for q in queued],
        [q.request_id for q in queued],
        [q.message.topic for q in queued],
        [q.message.key for q in queued],
        [q.message.payload for q in queued],
        [json.dumps(q.message.headers) for q in queued],
        redrive_after_s,
    )


async def forget_publish_requests(conn: asyncpg.Connection, requests: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """(entry_id, request_id) pairs answered or superseded: nothing to re-drive any more."""
    if requests:
        await conn.execute(
            """
            DELETE FROM publish_requests p USING unnest($1::uuid[], $2::uuid[]) AS x(entry_id, request_id)
             WHERE p.entry_id = x.entry_id AND p.request_id = x.request_id
            """,
            [r[0] for r in requests],
            [r[1] for r in requests],
        )


async def claim_due_publishes(conn: asyncpg.Connection, limit: int) -> list[DuePublish]:
    """Overdue publish requests, oldest first, locked for this transaction; rows another sweeper holds are
    skipped, so N aggregator instances re-drive each request once per round."""
    rows = await conn.fetch(
        """
        SELECT p.entry_id, p.request_id, p.topic, p.key, p.payload::text AS payload, p.headers::text AS headers,
               p.redrives,
               EXTRACT(EPOCH FROM now() - p.queued_at)::float8 AS waited_s,
               COALESCE(e.status = 'publishing' AND e.publishing_request_id = p.request_id, false) AS current
          FROM publish_requests p LEFT JOIN entries e ON e.entry_id = p.entry_id
         WHERE p.redrive_at <= now()
         ORDER BY p.redrive_at
         LIMIT $1
           FOR UPDATE OF p SKIP LOCKED
        """,
        limit,
    )
    return [
        DuePublish(
            entry_id=r["entry_id"],
            request_id=r["request_id"],
            message=None
            if r["payload"] is None
            else OutboxMessage(r["topic"], r["key"], r["payload"], json.loads(r["headers"])),
            redrives=r["redrives"],
            waited_s=r["waited_s"],
            current=r["current"],
        )
        for r in rows
    ]


async def publishes_redriven(
    conn: asyncpg.Connection, redriven: Sequence[tuple[uuid.UUID, OutboxMessage, float]]
) -> None:
    """(entry_id, the request as sent again, seconds until the next re-drive) rows."""
    if redriven:
        await conn.execute(
            """
            UPDATE publish_requests p
               SET redrives = p.redrives + 1, topic = x.t, key = x.k, payload = x.p::jsonb, headers = x.h::jsonb,
                   redrive_at = now() + make_interval(secs => x.delay)
              FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[])
                   AS x(entry_id, t, k, p, h, delay)
             WHERE p.entry_id = x.entry_id
            """,
            [r[0] for r in redriven],
            [r[1].topic for r in redriven],
            [r[1].key for r in redriven],
            [r[1].payload for r in redriven],
            [json.dumps(r[1].headers) for r in redriven],
            [r[2] for r in redriven],
        )


# --- replicas of setup, mappings and names ---------------------------------------------


@dataclass
class AccountMappings:
    """The aggregator's replica of one account's setup, mappings and reference names."""

    procore_company_id: int | None = None
    enabled_modules: frozenset[Module] = frozenset()
    two_way: bool = False
    ids: dict[tuple[str, str, int], tuple[int, str | None]] = field(default_factory=dict)
    names: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)
    broken: dict[tuple[str, str, int], str] = field(default_factory=dict)
    """Mappings cleared because their Procore entity disappeared, with the reason."""

    def broken_reason(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None:
        return self.broken.get((entity.value, mobiclocks_id, project_id or 0))

    def procore_id(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> int | None:
        found = self.ids.get((entity.value, mobiclocks_id, project_id or 0))
        return found[0] if found else None

    def procore_name(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None:
        found = self.ids.get((entity.value, mobiclocks_id, project_id or 0))
        return found[1] if found else None

    def label(self, kind: ReferenceKind, entity_id: str) -> str:
        found = self.names.get((kind.value, entity_id))
        if found is None:
            return entity_id
        name, number = found
        return f"{number} {name}" if number else name


def _remember_mapping(m: AccountMappings, r: asyncpg.Record) -> None:
    key = (r["entity"], r["mobiclocks_id"], r["procore_project_id"])
    if r["procore_id"] is not None:
        m.ids[key] = (r["procore_id"], r["procore_name"])
    elif r["broken_reason"]:
        m.broken[key] = r["broken_reason"]


async def load_account_mappings(conn: asyncpg.Connection, account_id: str) -> AccountMappings:
    m = AccountMappings()
    setup = await conn.fetchrow("SELECT * FROM setups WHERE account_id = $1", account_id)
    if setup is not None:
        m.procore_company_id = setup["procore_company_id"]
        m.enabled_modules = frozenset(Module(x) for x in setup["enabled_modules"])
        m.two_way = setup["two_way"]
    for r in await conn.fetch("SELECT * FROM mappings WHERE account_id = $1", account_id):
        _remember_mapping(m, r)
    for r in await conn.fetch("SELECT * FROM reference_names WHERE account_id = $1", account_id):
        m.names[(r["kind"], r["entity_id"])] = (r["name"], r["number"])
    return m


async def load_setups(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, AccountMappings]:
    """Setup of each account (enabled modules, Procore company), mappings not loaded yet."""
    out = {a: AccountMappings() for a in account_ids}
    for r in await conn.fetch("SELECT * FROM setups WHERE account_id = ANY($1::text[])", list(account_ids)):
        m = out[r["account_id"]]
        m.procore_company_id = r["procore_company_id"]
        m.enabled_modules = frozenset(Module(x) for x in r["enabled_modules"])
        m.two_way = r["two_way"]
    return out


async def load_mappings_for(
    conn: asyncpg.Connection,
    accounts: dict[str, AccountMappings],
    ids: set[tuple[str, str, str]],
    names: set[tuple[str, str, str]],
) -> None:
    """Fill in just the mappings (account, entity, MobiClocks id) and names (account, kind, id) asked for."""
    if ids:
        rows = await conn.fetch(
            """
            SELECT m.* FROM mappings m
              JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(account_id, entity, mobiclocks_id)
                ON m.account_id = k.account_id AND m.entity = k.entity AND m.mobiclocks_id = k.mobiclocks_id
            """,
            *map(list, zip(*ids, strict=True)),
        )
        for r in rows:
            _remember_mapping(accounts[r["account_id"]], r)
    if names:
        rows = await conn.fetch(
            """
            SELECT n.* FROM reference_names n
              JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(account_id, kind, entity_id)
                ON n.account_id = k.account_id AND n.kind = k.kind AND n.entity_id = k.entity_id
            """,
            *map(list, zip(*names, strict=True)),
        )
        for r in rows:
            accounts[r["account_id"]].names[(r["kind"], r["entity_id"])] = (r["name"], r["number"])


async def save_setup(
    conn: asyncpg.Connection,
    account_id: str,
    company_id: int | None,
    modules: Sequence[Module],
    two_way: bool,
) -> None:
    await conn.execute(
        """
        INSERT INTO setups (account_id, procore_company_id, enabled_modules, two_way) VALUES ($1, $2, $3, $4)
        ON CONFLICT (account_id) DO UPDATE SET procore_company_id = EXCLUDED.procore_company_id,
            enabled_modules = EXCLUDED.enabled_modules, two_way = EXCLUDED.two_way, updated_at = now()
        """,
        account_id,
        company_id,
        sorted(m.value for m in modules),
        two_way,
    )


async def save_mapping(
    conn: asyncpg.Connection,
    account_id: str,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    project_id: int | None,
    procore_id: int | None,
    procore_name: str | None,
    broken_reason: str | None = None,
) -> None:
    if procore_id is None and not broken_reason:
        await conn.execute(
            "DELETE FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
            " AND procore_project_id = $4",
            account_id,
            entity.value,
            mobiclocks_id,
            project_id or 0,
        )
        return
    await conn.execute(
        """
        INSERT INTO mappings (account_id, entity, mobiclocks_id, procore_project_id, procore_id, procore_name,
                              broken_reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (account_id, entity, mobiclocks_id, procore_project_id)
        DO UPDATE SET procore_id = EXCLUDED.procore_id, procore_name = EXCLUDED.procore_name,
                      broken_reason = EXCLUDED.broken_reason
        """,
        account_id,
        entity.value,
        mobiclocks_id,
        project_id or 0,
        procore_id,
        procore_name,
        None if procore_id is not None else broken_reason,
    )


async def save_reference_name(
    conn: asyncpg.Connection,
    account_id: str,
    kind: ReferenceKind,
    entity_id: str,
    name: str | None,
    number: str | None,
) -> None:
    if name is None:
        await conn.execute(
            "DELETE FROM reference_names WHERE account_id = $1 AND kind = $2 AND entity_id = $3",
            account_id,
            kind.value,
            entity_id,
        )
        return
    await conn.execute(
        """
        INSERT INTO reference_names (account_id, kind, entity_id, name, number) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (account_id, kind, entity_id) DO UPDATE SET name = EXCLUDED.name, number = EXCLUDED.number
        """,
        account_id,
        kind.value,
        entity_id,
        name,
        number,
    )
