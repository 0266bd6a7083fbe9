"""The entries (table `entries`): locking, creating, re-settling, saving and deleting them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, NamedTuple

import asyncpg

from services.aggregator.adapters import arrays
from services.aggregator.adapters.timelogs import Group
from services.aggregator.domain import MODULE_DIMS, EntryRef, EntryState, Status, Totals
from shared.events import Module, PublishEntries


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


# --- entries ---------------------------------------------------------------------------


async def lock_entries_of_groups(
    conn: asyncpg.Connection, groups: Iterable[Group]
) -> list[tuple[str, EntryRef, LockedEntry]]:
    """(account, entry, its status and totals) of every entry of these groups, locked in id order."""
    gs = sorted(set(groups))
    rows = await conn.fetch(
        f"""
        SELECT {LOCKED_COLUMNS}, account_id, module, job_site_id, work_date, dims::text AS dims FROM entries e
         WHERE (account_id, job_site_id, work_date) IN (
               SELECT * FROM unnest($1::text[], $2::text[], $3::date[]))
         ORDER BY e.entry_id
           FOR UPDATE OF e
        """,
        [g[0] for g in gs],
        [g[1] for g in gs],
        [g[2] for g in gs],
    )
    out = []
    for r in rows:
        module = Module(r["module"])
        dims = json.loads(r["dims"])
        ref = EntryRef(module, r["job_site_id"], r["work_date"], tuple(dims.get(n) for n in MODULE_DIMS[module]))
        out.append((r["account_id"], ref, locked_row(r)))
    return out


async def lock_entries_in_scope(conn: asyncpg.Connection, cmd: PublishEntries) -> list[StoredEntry]:
    """The entries a publish command names (a cell, a list, or a date range of one module), locked."""
    scope = cmd.scope
    base = "account_id = $1 AND module = $2"
    args: list[object] = [cmd.account_id, cmd.module.value]
    if scope.kind == "cell":
        return await _lock_where(
            conn, f"{base} AND job_site_id = $3 AND work_date = $4", *args, scope.job_site_id, scope.work_date
        )
    if scope.kind == "entries":
        return await _lock_where(conn, f"{base} AND entry_id = ANY($3::uuid[])", *args, list(scope.entry_ids))
    return await _lock_where(conn, f"{base} AND work_date BETWEEN $3 AND $4", *args, scope.date_from, scope.date_to)


async def lock_entry(conn: asyncpg.Connection, entry_id: uuid.UUID) -> StoredEntry | None:
    """The entry, locked; None when it does not exist (any more)."""
    found = await _lock_where(conn, "entry_id = $1", entry_id)
    return found[0] if found else None


async def lock_entries_of_procore_record(
    conn: asyncpg.Connection, account_id: str, module: Module, procore_id: int
) -> list[StoredEntry]:
    """The entries published as this Procore record, locked in id order."""
    return await _lock_where(
        conn, "account_id = $1 AND module = $2 AND procore_id = $3", account_id, module.value, procore_id
    )


async def _lock_where(conn: asyncpg.Connection, where: str, *args: Any) -> list[StoredEntry]:
    """Only this module's fixed conditions are pasted in (never a caller's)."""
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
        e.entry_id,
        e.account_id,
        e.module.value,
        e.job_site_id,
        e.work_date,
        e.entry_key,
        json.dumps(e.dims),
        None if e.content is None else json.dumps(e.content),
        s.fingerprint,
        e.totals.contributions,
        s.status.value,
        s.version,
        json.dumps(s.errors) if s.errors else "[]",
        s.last_error,
        s.published_fingerprint,
        None if s.published_timelog_ids is None else sorted(s.published_timelog_ids),
        s.procore_id,
        e.procore_updated_at,
        None if e.published_payload is None else json.dumps(e.published_payload),
        s.publishing_request_id,
        s.publishing_fingerprint,
        None if s.publishing_timelog_ids is None else sorted(s.publishing_timelog_ids),
        sorted(s.deleted_timelog_ids),
        e.totals.seconds,
        e.totals.units,
    )


class LockedEntry(NamedTuple):
    """What the timelog path needs of an existing entry (locked): its status and its totals. (Named tuples: the hot
    path makes one per entry it touches, and a frozen dataclass costs several times more to make.)"""

    entry_id: uuid.UUID
    state: EntryState
    totals: Totals


class NewEntry(NamedTuple):
    entry_id: uuid.UUID
    account_id: str
    ref: EntryRef
    content: dict[str, str]
    state: EntryState
    totals: Totals


LOCKED_COLUMNS = (
    "entry_id, status, fingerprint, version, errors::text AS errors, last_error, procore_id, published_fingerprint,"
    " published_timelog_ids, publishing_request_id, publishing_fingerprint, publishing_timelog_ids,"
    " deleted_timelog_ids, seconds, units, contributions"
)


_STATUS_OF: dict[str, Status] = {s.value: s for s in Status}


def locked_row(row: asyncpg.Record, errors_of: dict[str, tuple[str, ...]] | None = None) -> LockedEntry:
    """`errors_of`: errors already read from the same JSON text (locked entries share a few error lists)."""
    text = row["errors"]
    errors: tuple[str, ...] = ()
    if text != "[]":
        known = errors_of.get(text) if errors_of is not None else None
        errors = known if known is not None else tuple(json.loads(text))
        if errors_of is not None:
            errors_of[text] = errors
    state = EntryState(
        status=_STATUS_OF[row["status"]],
        fingerprint=row["fingerprint"],
        version=row["version"],
        errors=errors,
        last_error=row["last_error"],
        procore_id=row["procore_id"],
        published_fingerprint=row["published_fingerprint"],
        published_timelog_ids=_frozen(row["published_timelog_ids"]),
        publishing_request_id=row["publishing_request_id"],
        publishing_fingerprint=row["publishing_fingerprint"],
        publishing_timelog_ids=_frozen(row["publishing_timelog_ids"]),
        deleted_timelog_ids=frozenset(row["deleted_timelog_ids"]),
    )
    return LockedEntry(row["entry_id"], state, Totals(row["seconds"], row["units"], row["contributions"]))


def locked(e: StoredEntry) -> LockedEntry:
    return LockedEntry(e.entry_id, e.state, e.totals)


def _uuid_order(u: uuid.UUID) -> int:
    """PostgreSQL orders uuids as their bytes, which is the order of their integers (and far faster to sort by)."""
    return u.int


async def lock_entries_by_id(conn: asyncpg.Connection, entry_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, LockedEntry]:
    """The status and totals of these entries (those that exist), locked in id order."""
    rows = await conn.fetch(
        f"""
        SELECT {LOCKED_COLUMNS} FROM entries e JOIN unnest($1::text::uuid[]) AS k(id) ON e.entry_id = k.id
         ORDER BY e.entry_id FOR UPDATE OF e
        """,
        arrays.uuids(sorted(entry_ids, key=_uuid_order)),
    )
    errors_of: dict[str, tuple[str, ...]] = {}
    return {r["entry_id"]: locked_row(r, errors_of) for r in rows}


def _dims_from_key() -> str:
    """SQL for an entry's `dims` object from its key (`EntryRef.key`: `[job site, day, *dims]` in MODULE_DIMS order),
    so the insert needs no per-entry JSON from Python: the same jsonb as `dims_dict()` rendered."""
    cases = []
    for module, names in MODULE_DIMS.items():
        pairs = ", ".join(f"'{name}', j.k->{i + 2}" for i, name in enumerate(names))
        cases.append(f"WHEN '{module.value}' THEN jsonb_build_object({pairs})")
    return f"CASE x.m {' '.join(cases)} END"


_CREATE_ENTRIES = f"""
    INSERT INTO entries (entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content,
                         fingerprint, contributions, status, version, errors, seconds, units)
    SELECT x.e, x.a, x.m, j.k->>0, (j.k->>1)::date, x.k, {_dims_from_key()}, x.c::jsonb, x.f, x.n, x.st, 1,
           x.err::jsonb, x.sec, x.u
      FROM unnest($1::text::uuid[], $2::text::text[], $3::text::text[], $4::text::text[], $5::text::text[],
                  $6::text::text[], $7::text::int[], $8::text::text[], $9::text::text[], $10::text::bigint[],
                  $11::text::numeric[])
           AS x(e, a, m, k, c, f, n, st, err, sec, u)
     CROSS JOIN LATERAL (SELECT x.k::jsonb AS k OFFSET 0) j  -- parsed once, not once per use
    ON CONFLICT (entry_id) DO NOTHING
    RETURNING entry_id
"""


def _errors_json(errors: Sequence[tuple[str, ...]]) -> list[str]:
    """Each entry's errors as JSON; entries of a batch share a few error tuples (the validator's), rendered once
    each (by identity: they are alive for the whole call)."""
    rendered: dict[int, str] = {}
    out = []
    for errs in errors:
        if not errs:
            out.append("[]")
            continue
        text = rendered.get(id(errs))
        if text is None:
            text = rendered[id(errs)] = json.dumps(errs)
        out.append(text)
    return out


def _contents_json(contents: Iterable[dict[str, str] | None]) -> list[str | None]:
    """Each entry's content as JSON; a batch's entries share few distinct contents (8.00 hours, 3 workers), each
    rendered once (by value: json.dumps costs ten times a lookup)."""
    rendered: dict[tuple[tuple[str, str], ...], str] = {}
    out: list[str | None] = []
    for content in contents:
        if content is None:
            out.append(None)
            continue
        key = tuple(content.items())
        text = rendered.get(key)
        if text is None:
            text = rendered[key] = json.dumps(content)
        out.append(text)
    return out


NewEntryRows = tuple[str, ...]
"""New entries as the insert's array parameters (`new_entry_rows`)."""


def new_entry_rows(entries: Sequence[NewEntry]) -> NewEntryRows:
    """The insert's parameters for these new entries, in id order (built apart from the insert, so a caller can build
    the next rows while PostgreSQL inserts these)."""
    ordered = sorted(entries, key=lambda e: e.entry_id.int)
    return (
        arrays.uuids([e.entry_id for e in ordered]),
        arrays.texts([e.account_id for e in ordered]),
        arrays.texts([e.ref.module.value for e in ordered]),
        arrays.texts([e.ref.key for e in ordered]),
        arrays.texts(_contents_json([e.content for e in ordered])),
        arrays.texts([e.state.fingerprint for e in ordered]),
        arrays.numbers([e.totals.contributions for e in ordered]),
        arrays.texts([e.state.status.value for e in ordered]),
        arrays.texts(_errors_json([e.state.errors for e in ordered])),
        arrays.numbers([e.totals.seconds for e in ordered]),
        arrays.numbers([e.totals.units for e in ordered]),
    )


async def create_entries(conn: asyncpg.Connection, rows: NewEntryRows) -> set[uuid.UUID]:
    """Insert new entries (`new_entry_rows`) in one statement, in id order; returns the ids inserted. Job site, day
    and dims are read from the entry's key in SQL.

    An entry missing from the answer was created by a concurrent writer (this insert waited for it
    to commit): the caller locks it and applies its change on top."""
    if rows[0] == "{}":
        return set()
    return {r["entry_id"] for r in await conn.fetch(_CREATE_ENTRIES, *rows)}


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


EntryUpdate = tuple[uuid.UUID, EntryState, dict[str, str] | None, Totals]
"""(entry_id, state, content, totals) of an existing entry the timelog path changed."""


async def update_entry_totals(conn: asyncpg.Connection, updates: Sequence[EntryUpdate]) -> None:
    """The timelog path's write of existing entries: totals, content and status only (publish state unchanged),
    one statement for all of them."""
    if not updates:
        return
    ordered = sorted(updates, key=lambda u: u[0].int)
    await conn.execute(
        """
        UPDATE entries e
           SET content = x.c::jsonb, fingerprint = x.f, contributions = x.n, seconds = x.sec, units = x.u,
               status = x.st, version = x.v, errors = x.err::jsonb, last_error = x.le,
               deleted_timelog_ids = x.dl::text[], updated_at = now()
          FROM unnest($1::text::uuid[], $2::text::text[], $3::text::text[], $4::text::int[], $5::text::bigint[],
                      $6::text::numeric[], $7::text::text[], $8::text::int[], $9::text::text[], $10::text::text[],
                      $11::text::text[]) AS x(id, c, f, n, sec, u, st, v, err, le, dl)
         WHERE e.entry_id = x.id
        """,
        arrays.uuids([u[0] for u in ordered]),
        arrays.texts(_contents_json([u[2] for u in ordered])),
        arrays.texts([u[1].fingerprint for u in ordered]),
        arrays.numbers([u[3].contributions for u in ordered]),
        arrays.numbers([u[3].seconds for u in ordered]),
        arrays.numbers([u[3].units for u in ordered]),
        arrays.texts([u[1].status.value for u in ordered]),
        arrays.numbers([u[1].version for u in ordered]),
        arrays.texts(_errors_json([u[1].errors for u in ordered])),
        arrays.texts([u[1].last_error for u in ordered]),
        arrays.texts([arrays.texts(sorted(u[1].deleted_timelog_ids)) for u in ordered]),
    )


async def delete_entries(conn: asyncpg.Connection, entry_ids: Sequence[uuid.UUID]) -> None:
    if entry_ids:
        await conn.execute("DELETE FROM entries WHERE entry_id = ANY($1::uuid[])", list(entry_ids))
        await conn.execute("DELETE FROM entry_members WHERE entry_id = ANY($1::uuid[])", list(entry_ids))


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
