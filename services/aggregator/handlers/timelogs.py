"""Timelog batches and from-scratch recomputes: how timelogs become entries (deltas, set-based), re-settled by the
status machine. Each works on the tables one transaction sees (`TimelogTables`: `adapters.store.Store` over a
connection in a transaction the caller opened); the SQL is in the adapters."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import TypeAdapter

from services.aggregator import domain
from services.aggregator.adapters.entries import (
    EntryUpdate,
    LockedEntry,
    NewEntry,
    NewEntryRows,
    StoredEntry,
    locked,
    new_entry_rows,
)
from services.aggregator.adapters.replica import AccountMappings
from services.aggregator.adapters.timelogs import Group, StoredTimelog
from services.aggregator.handlers.ahead import statements_ahead
from shared.events import (
    Module,
    TimelogDeleted,
    TimelogEvent,
    TimelogUpserted,
)
from shared.records import DeadLetterSink, apply_isolating_poison, parse_records
from shared.transient import Transient

log = logging.getLogger(__name__)


class TimelogTables(Protocol):
    """The tables a timelog batch or a from-scratch recompute works on, in one transaction (`adapters.store.Store`)."""

    async def lock_accounts_shared(self, accounts: Sequence[str]) -> None: ...
    async def lock_account(self, account_id: str) -> None: ...
    async def insert_new_timelogs(self, events: Sequence[TimelogUpserted | TimelogDeleted]) -> set[tuple[str, str]]: ...
    async def lock_timelogs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredTimelog]: ...
    async def upsert_timelogs(self, events: Sequence[TimelogUpserted | TimelogDeleted]) -> None: ...
    async def totals_of_groups(
        self, groups: Iterable[Group], modules: Iterable[Module]
    ) -> dict[tuple[str, domain.EntryRef], domain.Totals]: ...
    async def changed_totals_of_groups(
        self, groups: Iterable[Group], modules: Iterable[Module]
    ) -> list[tuple[str, domain.EntryRef, domain.Totals, uuid.UUID | None]]: ...
    async def groups_of_account(self, account_id: str) -> list[Group]: ...
    async def lock_entries_by_id(self, entry_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, LockedEntry]: ...
    async def lock_entries_published_with(
        self, account_ids: Sequence[str], timelog_ids: Sequence[str]
    ) -> list[StoredEntry]: ...
    async def lock_entries_of_groups(
        self, groups: Iterable[Group]
    ) -> list[tuple[str, domain.EntryRef, LockedEntry]]: ...
    async def create_entries(self, rows: NewEntryRows) -> set[uuid.UUID]: ...
    async def update_entry_totals(self, updates: Sequence[EntryUpdate]) -> None: ...
    async def delete_entries(self, entry_ids: Sequence[uuid.UUID]) -> None: ...
    async def load_members(self, of: dict[uuid.UUID, LockedEntry]) -> None: ...
    async def save_member_changes(self, changes: Sequence[tuple[uuid.UUID, str, int]]) -> None: ...
    async def load_setups(self, account_ids: Sequence[str]) -> dict[str, AccountMappings]: ...
    async def load_mappings_for(
        self, accounts: dict[str, AccountMappings], ids: set[tuple[str, str, str]], names: set[tuple[str, str, str]]
    ) -> None: ...


TimelogChange = TimelogUpserted | TimelogDeleted
_timelog_event: TypeAdapter[TimelogChange] = TypeAdapter(TimelogEvent)


def parse_timelog_records(records: Sequence[Any]) -> tuple[list[tuple[Any, TimelogChange]], list[tuple[Any, str]]]:
    """Split a batch of Kafka records into valid timelog events and (record, reason) rejects."""
    return parse_records(records, _timelog_event)


async def apply_timelog_records(
    transaction: Callable[[], AbstractAsyncContextManager[TimelogTables]],
    records: Sequence[Any],
    dead_letters: DeadLetterSink,
) -> int:
    """Apply a batch in one transaction (`transaction()` opens one and gives the tables as it sees them);
    dead-letter what is malformed or can never be applied. Returns how many timelog changes were stored.

    Unavailable is not invalid: a transient failure (the database away, a deadlock, a serialization
    failure, a concurrent writer) propagates, so the consumer retries the whole batch for as long as it
    takes and no valid event is dead-lettered. A deterministic failure is narrowed down by halving the
    batch (`shared.records.apply_isolating_poison`): halves that apply are committed (events apply by
    revision, so a later retry of the whole batch changes nothing twice), and only an event that fails
    alone, deterministically, is dead-lettered.
    """
    valid, rejects = parse_timelog_records(records)
    for record, reason in rejects:
        await dead_letters.send(record, reason)
    applied = 0

    async def apply(items: Sequence[tuple[Any, TimelogChange]]) -> None:
        nonlocal applied
        async with transaction() as tables:
            applied += await apply_timelog_events(tables, [event for _, event in items])

    async def reject(item: tuple[Any, TimelogChange], error: BaseException) -> None:
        await dead_letters.send(item[0], f"could not be applied: {error!r}"[:2000])

    await apply_isolating_poison(valid, apply, reject)
    return applied


def newest_per_timelog(events: Iterable[TimelogChange]) -> list[TimelogChange]:
    """Within a batch only the highest revision of each timelog matters."""
    best: dict[tuple[str, str], TimelogChange] = {}
    for e in events:
        key = (e.account_id, e.timelog_id)
        if key not in best or e.revision > best[key].revision:
            best[key] = e
    return list(best.values())


def to_timelog(e: TimelogUpserted) -> domain.Timelog:
    return domain.Timelog(
        timelog_id=e.timelog_id,
        employee_id=e.employee_id,
        company_id=e.company_id,
        crew_tag=e.crew_tag,
        job_site_id=e.job_site_id,
        work_date=e.work_date,
        seconds=e.seconds,
        cost_code_id=e.cost_code_id,
        pay_class_id=e.pay_class_id,
        pay_id=e.pay_id,
        quantities=tuple((q.cost_code_id, q.unit_of_measure, q.units) for q in e.quantities),
    )


AccountRef = tuple[str, domain.EntryRef]


class ConcurrentEntryCreation(Transient):
    """Other writers kept creating entries this batch meant to create: the batch is retried (never dead-lettered)."""


_RACE_ROUNDS = 3


async def apply_timelog_events(tables: TimelogTables, events: Sequence[TimelogChange]) -> int:  # noqa: C901 - the batch's steps in order (lock, parse, apply, settle, emit), each a call
    """Store newer timelog revisions and apply their effect on entries as deltas (one batch, set-based).

    Each event removes its timelog's old contributions and adds its new ones; entries are
    locked, updated from their stored totals, re-settled by the status machine, and written
    back. The result equals a from-scratch recompute (see `recompute_groups`).
    """
    batch = newest_per_timelog(events)
    if not batch:
        return 0
    accounts = sorted({e.account_id for e in batch})
    # Shared account locks: a from-scratch recompute of an account takes the exclusive one.
    await tables.lock_accounts_shared(accounts)
    views = await tables.load_setups(accounts)
    # Lock by identity, not by row: timelogs nobody stored yet are claimed by inserting them (a concurrent
    # batch with the same timelog waits on the unique index), stored ones are locked; so two instances that
    # consume two revisions of one timelog apply them one after the other, each from the other's result.
    async with statements_ahead() as ahead:
        inserting = await ahead.send(tables.insert_new_timelogs(batch))
        adds = _contributions_of_upserts(batch, views)  # while PostgreSQL inserts
        inserted = await inserting
    stored = await tables.lock_timelogs(
        [(e.account_id, e.timelog_id) for e in batch if (e.account_id, e.timelog_id) not in inserted]
    )
    fresh = [
        e
        for e in batch
        if (e.account_id, e.timelog_id) in inserted
        or (old := stored.get((e.account_id, e.timelog_id))) is None
        or old.revision < e.revision
    ]
    if not fresh:
        return 0
    deltas: dict[AccountRef, domain.Totals] = defaultdict(domain.Totals)
    deleted: dict[AccountRef, set[str]] = defaultdict(set)
    revived: dict[AccountRef, set[str]] = defaultdict(set)
    for e in fresh:
        modules = views[e.account_id].enabled_modules
        previous = stored.get((e.account_id, e.timelog_id))
        if previous is not None and previous.timelog is not None:
            for ref, seconds, units, member in domain.contributions(previous.timelog, modules):
                deltas[(e.account_id, ref)].add(seconds, units, member, -1)
                if isinstance(e, TimelogDeleted):
                    deleted[(e.account_id, ref)].add(e.timelog_id)
        if isinstance(e, TimelogUpserted):
            for ref, seconds, units, member in adds[(e.account_id, e.timelog_id)]:
                deltas[(e.account_id, ref)].add(seconds, units, member, +1)
                revived[(e.account_id, ref)].add(e.timelog_id)
    await tables.upsert_timelogs([e for e in fresh if (e.account_id, e.timelog_id) not in inserted])

    ids = {key: domain.entry_id_of(key) for key in deltas}
    found = await tables.lock_entries_by_id(list(ids.values()))
    existing: dict[AccountRef, LockedEntry] = {}
    if found:
        existing = {key: entry for key, id_ in ids.items() if (entry := found.get(id_)) is not None}
    gone = {(e.account_id, e.timelog_id) for e in fresh if isinstance(e, TimelogDeleted)}
    if gone:
        # entries published with a timelog it has since moved out of are Deleted too
        for published in await tables.lock_entries_published_with(accounts, sorted({t for _, t in gone})):
            with_ = (published.state.published_timelog_ids or frozenset()) | (
                published.state.publishing_timelog_ids or frozenset()
            )
            hit = {t for a, t in gone if a == published.account_id and t in with_}
            if hit:
                key = (published.account_id, published.ref)
                existing.setdefault(key, locked(published))
                ids.setdefault(key, published.entry_id)
                deleted[key] |= hit
                deltas.setdefault(key, domain.Totals())
    await tables.load_members({ids[key]: entry for key, entry in existing.items()})
    after = {
        key: (entry.totals if (entry := existing.get(key)) is not None else domain.Totals()).merged(delta)
        for key, delta in deltas.items()
    }
    batch_changes = TimelogChanges(deleted, revived, ids)
    raced = await _settle_and_save(tables, views, existing, after, batch_changes)
    for _ in range(_RACE_ROUNDS):
        if not raced:
            break
        # A concurrent batch created these entries after this one looked (this insert waited for it to
        # commit): lock them now and apply this batch's change on top of theirs.
        found = await tables.lock_entries_by_id([ids[k] for k in raced])
        now_there = {key: entry for key in raced if (entry := found.get(ids[key])) is not None}
        await tables.load_members({ids[key]: entry for key, entry in now_there.items()})
        after = {
            key: (entry.totals if (entry := now_there.get(key)) is not None else domain.Totals()).merged(deltas[key])
            for key in raced
        }
        raced = await _settle_and_save(tables, views, now_there, after, batch_changes)
    if raced:
        raise ConcurrentEntryCreation(f"{len(raced)} entries of this batch kept being created concurrently")
    return len(fresh)


def _contributions_of_upserts(
    batch: Iterable[TimelogChange], views: dict[str, AccountMappings]
) -> dict[tuple[str, str], list[domain.Contribution]]:
    """What each upsert of the batch adds to which entries (the ids of those entries worked out too: remembered by
    `domain.entry_id_of` for when the batch asks)."""
    adds = {}
    for e in batch:
        if isinstance(e, TimelogUpserted):
            account = e.account_id
            adds[(account, e.timelog_id)] = found = domain.contributions(to_timelog(e), views[account].enabled_modules)
            for ref, *_ in found:
                domain.entry_id_of((account, ref))
    return adds


_QUANTITY = Module.PRODUCTION_QUANTITY


def _validates(ref: domain.EntryRef, revalidate: bool) -> bool:
    """Whether an existing entry's errors are re-checked: on mapping changes, and for production
    quantities whenever their units change (a fractional quantity cannot be published)."""
    return revalidate or ref.module is _QUANTITY


class Validator:
    """`domain.validate` for a batch's entries, remembered per account (`domain.Validation`): the batch's view of
    the mappings does not change while it runs."""

    def __init__(self, views: dict[str, AccountMappings]) -> None:
        self.views = views
        self.of_account: dict[str, domain.Validation] = {}

    def errors(self, account: str, ref: domain.EntryRef, content: dict[str, str]) -> tuple[str, ...]:
        validation = self.of_account.get(account)
        if validation is None:
            validation = self.of_account[account] = domain.Validation(self.views[account])
        return validation.errors(ref.module, ref.job_site_id, ref.dims, content)


@dataclass(frozen=True)
class TimelogChanges:
    """What a timelog batch changed in its entries besides their totals: the timelogs deleted from and revived in
    each, and the ids of the entries it touches."""

    deleted: dict[AccountRef, set[str]]
    revived: dict[AccountRef, set[str]]
    ids: dict[AccountRef, uuid.UUID]


async def _settle_and_save(
    tables: TimelogTables,
    views: dict[str, AccountMappings],
    existing: dict[AccountRef, LockedEntry],
    after: dict[AccountRef, domain.Totals],
    batch: TimelogChanges | None,
) -> set[AccountRef]:
    """Write entries whose totals are now `after`: new ones validated, changed ones re-settled. `batch` is what a
    timelog batch changed besides the totals; None for a from-scratch recompute, which re-checks every entry's errors.

    Only the status decisions are made here, per entry; reads and writes are set-based statements for the batch
    (new entries in a few id-ordered chunks, sent ahead: see `handlers.ahead`).
    Returns the new entries it could not create because a concurrent writer created them first."""
    revalidate = batch is None
    await tables.load_mappings_for(
        views,
        *domain.mapping_needs_of(key for key in after if key not in existing or _validates(key[1], revalidate)),
    )
    validator = Validator(views)
    ids = batch.ids if batch is not None else None
    new = sorted(
        ((ids[key] if ids else domain.entry_id_of(key), key) for key in after if key not in existing), key=_by_entry_id
    )
    made: list[NewEntry] = []
    created: set[uuid.UUID] = set()
    async with statements_ahead() as ahead:
        # New entries go in id order, a chunk per statement: PostgreSQL inserts one chunk while the next is built,
        # and the entries that existed are re-settled while it inserts the last.
        creating: asyncio.Future[set[uuid.UUID]] | None = None
        for chunk in _insert_chunks(new):
            entries = _new_entries(chunk, after, validator)
            made += entries
            rows = new_entry_rows(entries)
            if creating is not None:
                created |= await creating
            creating = await ahead.send(tables.create_entries(rows))
        changes = _settle_existing(existing, after, batch, validator)
        if creating is not None:
            created |= await creating
    await tables.delete_entries(changes.deleted)
    # settling never changes publish state, so existing entries only need their totals and status written
    await tables.update_entry_totals(changes.saved)
    members = changes.members
    for entry in made:
        if entry.entry_id in created:
            members += [(entry.entry_id, m, n) for m, n in entry.totals.members.items()]
    await tables.save_member_changes(members)
    return {(entry.account_id, entry.ref) for entry in made if entry.entry_id not in created}


@dataclass
class _Settled:
    """What re-settling existing entries writes: entries saved, entries deleted, member counts changed."""

    saved: list[EntryUpdate]
    deleted: list[uuid.UUID]
    members: list[tuple[uuid.UUID, str, int]]


def _settle_existing(
    existing: dict[AccountRef, LockedEntry],
    after: dict[AccountRef, domain.Totals],
    batch: TimelogChanges | None,
    validator: Validator,
) -> _Settled:
    """The status decisions for entries that existed, now with totals `after` (see `_settle_and_save`)."""
    revalidate = batch is None
    deleted = batch.deleted if batch is not None else {}
    revived = batch.revived if batch is not None else {}
    out = _Settled([], [], [])
    manpower = Module.MANPOWER
    for key, old in existing.items():
        total = after.get(key)
        if total is None:
            continue
        account, ref = key
        content, fp = domain.content_with_fingerprint(ref.module, total)
        old_state = old.state
        gone = old_state.deleted_timelog_ids
        for timelog_id in deleted.get(key, ()):
            gone = domain.timelog_deleted(old_state, timelog_id) | gone
        if (back := revived.get(key)) and gone:
            gone = gone - back
        changed_content = fp != old_state.fingerprint
        new_state = domain.content_changed(old_state, fp, gone)
        if (
            new_state is not None
            and content is not None
            and (revalidate or (_validates(ref, False) and changed_content))
        ):
            new_state = domain.errors_changed(new_state, validator.errors(account, ref, content))
        if new_state is None:
            out.deleted.append(old.entry_id)
            continue
        if new_state != old_state or changed_content or total != old.totals:
            out.saved.append((old.entry_id, new_state, content, total))
        if ref.module is manpower and total.members != old.totals.members:
            for member in old.totals.members.keys() | total.members.keys():
                if old.totals.members.get(member, 0) != total.members.get(member, 0):
                    out.members.append((old.entry_id, member, total.members.get(member, 0)))
    return out


_INSERT_CHUNKS = 4
"""New entries are inserted in this many statements (each in flight while the next chunk is built)…"""
_INSERT_AT_LEAST = 250
"""…of at least this many entries each (a statement has a cost of its own)."""


def _insert_chunks(new: list[tuple[uuid.UUID, AccountRef]]) -> list[list[tuple[uuid.UUID, AccountRef]]]:
    size = max(_INSERT_AT_LEAST, -(-len(new) // _INSERT_CHUNKS))
    return [new[start : start + size] for start in range(0, len(new), size)]


def _by_entry_id(item: tuple[uuid.UUID, AccountRef]) -> int:
    return item[0].int


def _new_entries(
    chunk: Iterable[tuple[uuid.UUID, AccountRef]], after: dict[AccountRef, domain.Totals], validator: Validator
) -> list[NewEntry]:
    """New entries with their first state (validated); one created and emptied again within one batch is none."""
    out = []
    for entry_id, key in chunk:
        account, ref = key
        total = after[key]
        content, fp = domain.content_with_fingerprint(ref.module, total)
        if content is None or fp is None:
            continue
        state = domain.new_entry(fp, validator.errors(account, ref, content))
        out.append(NewEntry(entry_id, account, ref, content, state, total))
    return out


async def recompute_groups(tables: TimelogTables, groups: Iterable[Group], revalidate: bool = True) -> None:
    """From scratch: make the entries of these (account, job site, day) groups equal their timelogs.

    With `revalidate` (mapping and setup changes) every entry of the groups is re-settled and its errors
    re-checked; without (`rebuild`), the totals are compared in SQL and only entries whose totals differ
    from their timelogs are settled and written."""
    by_account: dict[str, set[Group]] = defaultdict(set)
    for g in groups:
        by_account[g[0]].add(g)
    for account_id in sorted(by_account):
        await tables.lock_account(account_id)
        views = await tables.load_setups([account_id])
        view = views[account_id]
        account_groups = by_account[account_id]
        if not revalidate:
            await _repair_changed(tables, views, account_groups)
            continue
        existing = {
            (account, ref): entry
            for account, ref, entry in await tables.lock_entries_of_groups(account_groups)
            if ref.module in view.enabled_modules
        }
        await tables.load_members({e.entry_id: e for e in existing.values()})
        after: dict[AccountRef, domain.Totals] = {key: domain.Totals() for key in existing}
        after.update(await tables.totals_of_groups(account_groups, view.enabled_modules))
        # the exclusive account lock keeps every other writer of these entries out: nothing can race here
        if await _settle_and_save(tables, views, existing, after, None):
            raise ConcurrentEntryCreation("an entry was created during a from-scratch recompute of its account")


async def _repair_changed(tables: TimelogTables, views: dict[str, AccountMappings], groups: set[Group]) -> None:
    account_id = next(iter(groups))[0]
    changed = await tables.changed_totals_of_groups(groups, views[account_id].enabled_modules)
    if not changed:
        return
    ids = {(account, ref): id_ for account, ref, _, id_ in changed if id_ is not None}
    found = await tables.lock_entries_by_id(list(ids.values()))
    existing = {key: entry for key, id_ in ids.items() if (entry := found.get(id_)) is not None}
    await tables.load_members({e.entry_id: e for e in existing.values()})
    after = {(account, ref): totals for account, ref, totals, _ in changed}
    if await _settle_and_save(tables, views, existing, after, None):
        raise ConcurrentEntryCreation("an entry was created during a from-scratch recompute of its account")


async def revalidate_account(tables: TimelogTables, account_id: str) -> None:
    """Rebuild the account's entries from scratch and re-check their mappings (the enabled modules changed)."""
    # Lock before listing the groups: a timelog batch committing in between would otherwise land
    # timelogs in groups this recompute never sees.
    await tables.lock_account(account_id)
    groups = await tables.groups_of_account(account_id)
    if groups:
        await recompute_groups(tables, groups)
