"""Aggregator use cases. Each takes a connection inside a transaction the caller opened."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import asyncpg
from pydantic import TypeAdapter

from services.aggregator import domain
from services.aggregator.adapters import repository as repo
from services.aggregator.adapters.repository import AccountMappings, Group, StoredEntry
from shared.errors import InvalidMessage
from shared.events import (
    MappingChange,
    MappingChanged,
    Module,
    ProcoreOperation,
    ProcorePublishFinished,
    PublishEntries,
    PublishToProcore,
    ReferenceDeleted,
    ReferenceUpserted,
    SetupChanged,
    TimelogDeleted,
    TimelogEvent,
    TimelogUpserted,
)
from shared.outbox import OutboxMessage, add_to_outbox, trace_headers
from shared.records import parse_records
from shared.topics import Topics

log = logging.getLogger(__name__)

TimelogChange = TimelogUpserted | TimelogDeleted
_timelog_event: TypeAdapter[TimelogChange] = TypeAdapter(TimelogEvent)


class DeadLetterSink(Protocol):
    async def send(self, record: Any, reason: str, headers: dict[str, str] | None = None) -> None: ...


def parse_timelog_records(records: Sequence[Any]) -> tuple[list[tuple[Any, TimelogChange]], list[tuple[Any, str]]]:
    """Split a batch of Kafka records into valid timelog events and (record, reason) rejects."""
    return parse_records(records, _timelog_event)


async def apply_timelog_records(pool: asyncpg.Pool, records: Sequence[Any], dead_letters: DeadLetterSink) -> int:
    """Apply a batch in one transaction; dead-letter what is malformed.

    If the batch transaction fails, each event is retried alone: events that fail alone while
    others succeed are poison and dead-lettered; if every one fails the cause is likely
    transient (database down), so the error propagates and the whole batch is retried.
    """
    valid, rejects = parse_timelog_records(records)
    for record, reason in rejects:
        await dead_letters.send(record, reason)
    if not valid:
        return 0
    try:
        async with pool.acquire() as conn, conn.transaction():
            return await apply_timelog_events(conn, [e for _, e in valid])
    except (asyncpg.PostgresError, InvalidMessage, ValueError) as batch_error:
        if len(valid) == 1:
            raise
        log.warning("batch of %d failed (%r); applying one by one", len(valid), batch_error)
    applied, failures = 0, []
    for record, event in valid:
        try:
            async with pool.acquire() as conn, conn.transaction():
                applied += await apply_timelog_events(conn, [event])
        except (asyncpg.PostgresError, InvalidMessage, ValueError) as event_error:
            failures.append((record, event_error))
    if failures and len(failures) == len(valid):
        raise failures[0][1]
    for record, failure in failures:
        await dead_letters.send(record, f"could not be applied: {failure!r}"[:2000])
    return applied


def newest_per_timelog(events: Iterable[TimelogChange]) -> list[TimelogChange]:
    """Within a batch only the highest revision of each timelog matters."""
    best: dict[tuple[str, str], TimelogChange] = {}
    for e in events:
        key = (e.account_id, e.timelog_id)
        if key not in best or e.revision > best[key].revision:
            best[key] = e
    return list(best.values())


def _to_timelog(e: TimelogUpserted) -> domain.Timelog:
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


class ConcurrentEntryCreation(Exception):
    """Another writer created an entry this batch meant to create: the batch is retried."""


async def apply_timelog_events(conn: asyncpg.Connection, events: Sequence[TimelogChange]) -> int:
    """Store newer timelog revisions and apply their effect on entries as deltas (one batch, set-based).

    Each event removes its timelog's old contributions and adds its new ones; entries are
    locked, updated from their stored totals, re-settled by the status machine, and written
    back. The result equals a from-scratch recompute (see `recompute_groups`).
    """
    batch = newest_per_timelog(events)
    if not batch:
        return 0
    accounts = sorted({e.account_id for e in batch})
    # Shared per-account locks: a from-scratch recompute of an account takes the exclusive one.
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtext('aggregate:' || a)) FROM unnest($1::text[]) a ORDER BY a",
        accounts,
    )
    stored = await repo.lock_timelogs(conn, [(e.account_id, e.timelog_id) for e in batch])
    fresh = [e for e in batch if (old := stored.get((e.account_id, e.timelog_id))) is None or old.revision < e.revision]
    if not fresh:
        return 0
    views = await repo.load_setups(conn, accounts)
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
            for ref, seconds, units, member in domain.contributions(_to_timelog(e), modules):
                deltas[(e.account_id, ref)].add(seconds, units, member, +1)
                revived[(e.account_id, ref)].add(e.timelog_id)
    await repo.upsert_timelogs(conn, fresh)

    ids = {(a, ref): domain.entry_id(a, ref.module, ref.key) for a, ref in deltas}
    existing = {(e.account_id, e.ref): e for e in await repo.lock_entries_by_id(conn, list(ids.values()))}
    gone = {(e.account_id, e.timelog_id) for e in fresh if isinstance(e, TimelogDeleted)}
    if gone:
        # entries published with a timelog it has since moved out of are Deleted too
        for published in await repo.lock_entries_published_with(conn, accounts, sorted({t for _, t in gone})):
            with_ = (published.state.published_timelog_ids or frozenset()) | (
                published.state.publishing_timelog_ids or frozenset()
            )
            hit = {t for a, t in gone if a == published.account_id and t in with_}
            if hit:
                key = (published.account_id, published.ref)
                existing.setdefault(key, published)
                deleted[key] |= hit
                deltas.setdefault(key, domain.Totals())
    await repo.load_members(conn, list(existing.values()))
    after = {
        key: (entry.totals if (entry := existing.get(key)) is not None else domain.Totals()).merged(delta)
        for key, delta in deltas.items()
    }
    await _settle_and_save(conn, views, existing, after, deleted, revived, revalidate=False, ids=ids)
    return len(fresh)


def _validates(ref: domain.EntryRef, revalidate: bool) -> bool:
    """Whether an existing entry's errors are re-checked: on mapping changes, and for production
    quantities whenever their units change (a fractional quantity cannot be published)."""
    return revalidate or ref.module is Module.PRODUCTION_QUANTITY


async def _settle_and_save(
    conn: asyncpg.Connection,
    views: dict[str, AccountMappings],
    existing: dict[AccountRef, StoredEntry],
    after: dict[AccountRef, domain.Totals],
    deleted: dict[AccountRef, set[str]],
    revived: dict[AccountRef, set[str]],
    revalidate: bool,
    ids: dict[AccountRef, uuid.UUID] | None = None,
) -> None:
    """Write entries whose totals are now `after`: new ones validated, changed ones re-settled."""
    need_ids: set[tuple[str, str, str]] = set()
    need_names: set[tuple[str, str, str]] = set()
    for account, ref in after:
        old = existing.get((account, ref))
        if old is None or _validates(ref, revalidate):
            wanted_ids, wanted_names = domain.mapping_needs(ref)
            need_ids |= {(account, *i) for i in wanted_ids}
            need_names |= {(account, *n) for n in wanted_names}
    await repo.load_mappings_for(conn, views, need_ids, need_names)

    to_save: list[StoredEntry] = []
    to_create: list[StoredEntry] = []
    to_delete: list[uuid.UUID] = []
    members: list[tuple[uuid.UUID, str, int]] = []
    for (account, ref), total in after.items():
        old = existing.get((account, ref))
        content = domain.content_of(ref.module, total)
        fp = domain.fingerprint(content) if content is not None else None
        dims = ref.dims_dict()
        if old is None:
            if content is None or fp is None:
                continue  # created and emptied again within one batch
            errors = domain.validate(ref.module, ref.job_site_id, dims, content, views[account])
            key = ref.key
            entry = StoredEntry(
                entry_id=ids[(account, ref)] if ids else domain.entry_id(account, ref.module, key),
                account_id=account,
                module=ref.module,
                job_site_id=ref.job_site_id,
                work_date=ref.work_date,
                entry_key=key,
                dims=dims,
                content=content,
                state=domain.new_entry(fp, errors),
                procore_updated_at=None,
                published_payload=None,
                totals=total,
            )
            to_create.append(entry)
            members += [(entry.entry_id, m, n) for m, n in total.members.items()]
            continue
        gone = old.state.deleted_timelog_ids
        for timelog_id in deleted.get((account, ref), ()):
            gone = domain.timelog_deleted(old.state, timelog_id) | gone
        if (back := revived.get((account, ref))) and gone:
            gone = gone - back
        state = domain.content_changed(old.state, fp, gone)
        if (
            state is not None
            and content is not None
            and (revalidate or (_validates(ref, False) and content != old.content))
        ):
            state = domain.errors_changed(
                state, domain.validate(ref.module, ref.job_site_id, dims, content, views[account])
            )
        if state is None:
            to_delete.append(old.entry_id)
            continue
        if state != old.state or content != old.content or total != old.totals:
            to_save.append(replace(old, state=state, content=content, totals=total))
        if ref.module is Module.MANPOWER and total.members != old.totals.members:
            for member in old.totals.members.keys() | total.members.keys():
                if old.totals.members.get(member, 0) != total.members.get(member, 0):
                    members.append((old.entry_id, member, total.members.get(member, 0)))
    await repo.delete_entries(conn, to_delete)
    if to_create and await repo.create_entries(conn, to_create) != len(to_create):
        raise ConcurrentEntryCreation("an entry of this batch was created concurrently")
    # settling never changes publish state, so existing entries only need their totals and status written
    await repo.update_entry_totals(conn, to_save)
    await repo.save_member_changes(conn, members)


async def recompute_groups(conn: asyncpg.Connection, groups: Iterable[Group]) -> None:
    """From scratch: make the entries of these (account, job site, day) groups equal their timelogs."""
    by_account: dict[str, set[Group]] = defaultdict(set)
    for g in groups:
        by_account[g[0]].add(g)
    for account_id in sorted(by_account):
        await lock_account(conn, account_id)
        views = await repo.load_setups(conn, [account_id])
        view = views[account_id]
        account_groups = by_account[account_id]
        existing = {
            (account_id, e.ref): e
            for e in await repo.lock_entries_of_groups(conn, account_groups)
            if e.module in view.enabled_modules
        }
        await repo.load_members(conn, list(existing.values()))
        after: dict[AccountRef, domain.Totals] = {key: domain.Totals() for key in existing}
        for group_timelogs in (await repo.timelogs_of_groups(conn, account_groups)).values():
            for ref, total in domain.aggregate(group_timelogs, view.enabled_modules).items():
                after[(account_id, ref)] = total
        await _settle_and_save(conn, views, existing, after, {}, {}, revalidate=True)


async def lock_account(conn: asyncpg.Connection, account_id: str) -> None:
    """Exclusive per-account lock of a from-scratch recompute; timelog batches take it shared."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('aggregate:' || $1::text))", account_id)


async def revalidate_account(conn: asyncpg.Connection, account_id: str) -> None:
    """Mapping or setup changed: rebuild the account's entries and re-check their mappings."""
    # Lock before listing the groups: a timelog batch committing in between would otherwise land
    # timelogs in groups this recompute never sees.
    await lock_account(conn, account_id)
    groups = await repo.groups_of_account(conn, account_id)
    if groups:
        await recompute_groups(conn, groups)


async def apply_mapping_change(conn: asyncpg.Connection, change: MappingChange) -> None:
    if isinstance(change, SetupChanged):
        await repo.save_setup(
            conn, change.account_id, change.procore_company_id, change.enabled_modules, change.two_way
        )
    elif isinstance(change, MappingChanged):
        await repo.save_mapping(
            conn,
            change.account_id,
            change.entity,
            change.mobiclocks_id,
            change.procore_project_id,
            change.procore_id,
            change.procore_name,
            change.broken_reason,
        )
    await revalidate_account(conn, change.account_id)


async def apply_reference_event(conn: asyncpg.Connection, event: ReferenceUpserted | ReferenceDeleted) -> None:
    """Names are kept only to word the Non publishable errors."""
    if isinstance(event, ReferenceUpserted):
        await repo.save_reference_name(conn, event.account_id, event.kind, event.entity_id, event.name, event.number)
    else:
        await repo.save_reference_name(conn, event.account_id, event.kind, event.entity_id, None, None)


# --- publishing -------------------------------------------------------------------------


def _scope_filter(cmd: PublishEntries) -> tuple[str, list[object]]:
    scope = cmd.scope
    base = "account_id = $1 AND module = $2"
    args: list[object] = [cmd.account_id, cmd.module.value]
    if scope.kind == "cell":
        return f"{base} AND job_site_id = $3 AND work_date = $4", [*args, scope.job_site_id, scope.work_date]
    if scope.kind == "entries":
        return f"{base} AND entry_id = ANY($3::uuid[])", [*args, list(scope.entry_ids)]
    return f"{base} AND work_date BETWEEN $3 AND $4", [*args, scope.date_from, scope.date_to]


async def publish_entries(conn: asyncpg.Connection, cmd: PublishEntries, topics: Topics) -> int:
    """Move eligible entries to Publishing and queue one publish request each (transactional outbox)."""
    where, args = _scope_filter(cmd)
    entries = await repo.lock_entries(conn, where, *args)
    if not entries:
        return 0
    mappings = await repo.load_account_mappings(conn, cmd.account_id)
    if mappings.procore_company_id is None:
        log.warning("account %s asked to publish but has no Procore company", cmd.account_id)
        return 0
    headers = trace_headers()
    to_save: list[StoredEntry] = []
    outbox: list[OutboxMessage] = []
    history: list[tuple[uuid.UUID, uuid.UUID | None, str, str | None, str | None, str | None]] = []
    force = cmd.action.value == "force_publish"
    eligible = [e for e in entries if e.state.status in domain.PUBLISHABLE[cmd.action]]
    for e, members in zip(eligible, await repo.timelog_ids_of(conn, eligible), strict=True):
        request_id = uuid.uuid4()
        moved = domain.publish_requested(e.state, cmd.action, request_id, members)
        if moved is None:
            continue
        state, operation = moved
        project = mappings.procore_id(domain.ProcoreEntity.PROJECT, e.job_site_id)
        if project is None:
            continue
        payload = {}
        if operation is not ProcoreOperation.DELETE and e.content is not None:
            payload = domain.procore_payload(
                e.module, e.entry_id, e.work_date, e.job_site_id, e.dims, e.content, mappings
            )
        request = PublishToProcore(
            account_id=e.account_id,
            request_id=request_id,
            entry_id=e.entry_id,
            entry_version=state.version,
            module=e.module,
            operation=operation,
            procore_company_id=mappings.procore_company_id,
            procore_project_id=project,
            work_date=e.work_date,
            payload=payload,
            marker=domain.marker_for(e.entry_id),
            procore_id=state.procore_id,
            published_updated_at=e.procore_updated_at,
            published_payload=e.published_payload,
            force=force,
        )
        key = f"{e.account_id}:{e.job_site_id}"
        outbox.append(OutboxMessage(topics.publish_requests, key, request.model_dump_json(), headers))
        to_save.append(replace(e, state=state))
        history.append((e.entry_id, request_id, cmd.action.value, cmd.requested_by, None, operation.value))
    await repo.save_entries(conn, to_save)
    await add_to_outbox(conn, outbox)
    await repo.add_history(conn, history)
    return len(to_save)


async def apply_publish_result(conn: asyncpg.Connection, result: ProcorePublishFinished) -> bool:
    """Store what the publisher did; results of any request but an entry's current one change nothing."""
    found = await repo.lock_entries(conn, "entry_id = $1", result.entry_id)
    if not found:
        return False
    entry = found[0]
    state = domain.result_arrived(entry.state, result.request_id, result.outcome, result.procore_id, result.message)
    if state is entry.state:
        return False
    await repo.add_history(
        conn, [(entry.entry_id, result.request_id, "result", None, result.outcome.value, result.message)]
    )
    if state is None:
        await repo.delete_entries(conn, [entry.entry_id])
        return True
    published = result.outcome.value in ("published", "deleted")
    await repo.save_entries(
        conn,
        [
            replace(
                entry,
                state=state,
                procore_updated_at=result.procore_updated_at if published else entry.procore_updated_at,
                published_payload=result.published_payload if published else entry.published_payload,
            )
        ],
    )
    return True
