"""Aggregator use cases. Each takes a connection inside a transaction the caller opened."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import asyncpg
from pydantic import TypeAdapter

from services.aggregator import domain
from services.aggregator.adapters import repository as repo
from services.aggregator.adapters.repository import AccountMappings, Group, StoredEntry
from shared.events import (
    MappingChange,
    MappingChanged,
    Module,
    ProcoreEntity,
    ProcoreOperation,
    ProcorePublishFinished,
    PublishAction,
    PublishEntries,
    PublishOutcome,
    PublishToProcore,
    ReferenceDeleted,
    ReferenceUpserted,
    SetupChanged,
    TimelogDeleted,
    TimelogEvent,
    TimelogUpserted,
)
from shared.outbox import OutboxMessage, add_to_outbox, trace_headers
from shared.records import apply_isolating_poison, parse_records
from shared.topics import Topics
from shared.transient import Transient

log = logging.getLogger(__name__)

TimelogChange = TimelogUpserted | TimelogDeleted
_timelog_event: TypeAdapter[TimelogChange] = TypeAdapter(TimelogEvent)


class DeadLetterSink(Protocol):
    async def send(self, record: Any, reason: str, headers: dict[str, str] | None = None) -> None: ...


def parse_timelog_records(records: Sequence[Any]) -> tuple[list[tuple[Any, TimelogChange]], list[tuple[Any, str]]]:
    """Split a batch of Kafka records into valid timelog events and (record, reason) rejects."""
    return parse_records(records, _timelog_event)


async def apply_timelog_records(pool: asyncpg.Pool, records: Sequence[Any], dead_letters: DeadLetterSink) -> int:
    """Apply a batch in one transaction; dead-letter what is malformed or can never be applied. Returns how many
    timelog changes were stored.

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
        async with pool.acquire() as conn, conn.transaction():
            applied += await apply_timelog_events(conn, [event for _, event in items])

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


class ConcurrentEntryCreation(Transient):
    """Other writers kept creating entries this batch meant to create: the batch is retried (never dead-lettered)."""


_RACE_ROUNDS = 3


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
    # Shared account locks: a from-scratch recompute of an account takes the exclusive one.
    await repo.lock_accounts_shared(conn, accounts)
    # Lock by identity, not by row: timelogs nobody stored yet are claimed by inserting them (a concurrent
    # batch with the same timelog waits on the unique index), stored ones are locked; so two instances that
    # consume two revisions of one timelog apply them one after the other, each from the other's result.
    inserted = await repo.insert_new_timelogs(conn, batch)
    stored = await repo.lock_timelogs(
        conn, [(e.account_id, e.timelog_id) for e in batch if (e.account_id, e.timelog_id) not in inserted]
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
    await repo.upsert_timelogs(conn, [e for e in fresh if (e.account_id, e.timelog_id) not in inserted])

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
    raced = await _settle_and_save(conn, views, existing, after, deleted, revived, revalidate=False, ids=ids)
    for _ in range(_RACE_ROUNDS):
        if not raced:
            break
        # A concurrent batch created these entries after this one looked (this insert waited for it to
        # commit): lock them now and apply this batch's change on top of theirs.
        now_there = {(e.account_id, e.ref): e for e in await repo.lock_entries_by_id(conn, [ids[k] for k in raced])}
        await repo.load_members(conn, list(now_there.values()))
        after = {
            key: (entry.totals if (entry := now_there.get(key)) is not None else domain.Totals()).merged(deltas[key])
            for key in raced
        }
        raced = await _settle_and_save(conn, views, now_there, after, deleted, revived, revalidate=False, ids=ids)
    if raced:
        raise ConcurrentEntryCreation(f"{len(raced)} entries of this batch kept being created concurrently")
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
) -> set[AccountRef]:
    """Write entries whose totals are now `after`: new ones validated, changed ones re-settled.

    Returns the new entries it could not create because a concurrent writer created them first."""
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
    to_create: dict[AccountRef, StoredEntry] = {}
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
            to_create[(account, ref)] = entry
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
    created = await repo.create_entries(conn, list(to_create.values()))
    for entry in to_create.values():
        if entry.entry_id in created:
            members += [(entry.entry_id, m, n) for m, n in entry.totals.members.items()]
    # settling never changes publish state, so existing entries only need their totals and status written
    await repo.update_entry_totals(conn, to_save)
    await repo.save_member_changes(conn, members)
    return {key for key, entry in to_create.items() if entry.entry_id not in created}


async def recompute_groups(conn: asyncpg.Connection, groups: Iterable[Group]) -> None:
    """From scratch: make the entries of these (account, job site, day) groups equal their timelogs."""
    by_account: dict[str, set[Group]] = defaultdict(set)
    for g in groups:
        by_account[g[0]].add(g)
    for account_id in sorted(by_account):
        await repo.lock_account(conn, account_id)
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
        # the exclusive account lock keeps every other writer of these entries out: nothing can race here
        if await _settle_and_save(conn, views, existing, after, {}, {}, revalidate=True):
            raise ConcurrentEntryCreation("an entry was created during a from-scratch recompute of its account")


async def revalidate_account(conn: asyncpg.Connection, account_id: str) -> None:
    """Mapping or setup changed: rebuild the account's entries and re-check their mappings."""
    # Lock before listing the groups: a timelog batch committing in between would otherwise land
    # timelogs in groups this recompute never sees.
    await repo.lock_account(conn, account_id)
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

History = tuple[uuid.UUID, uuid.UUID | None, str, str | None, str | None, str | None]
"""(entry_id, request_id, action, requested_by, outcome, message): one row of an entry's publish history."""

REDRIVEN = "re-driven"
"""The history action of a publish request sent again because its result was overdue."""


@dataclass(frozen=True)
class RedrivePolicy:
    """When a publish request that got no result is sent again (see `redrive_stalled_publishes`)."""

    after_s: float = 120.0
    max_interval_s: float = 3600.0
    batch: int = 200


def _publish_request(
    e: StoredEntry,
    state: domain.EntryState,
    operation: ProcoreOperation,
    request_id: uuid.UUID,
    mappings: AccountMappings,
    force: bool,
) -> PublishToProcore:
    """The request for the publisher; raises FractionalQuantity when Procore cannot take the content."""
    company = mappings.procore_company_id
    project = mappings.procore_id(ProcoreEntity.PROJECT, e.job_site_id)
    assert company is not None and project is not None, "checked by domain.publish_blocker"
    payload = {}
    if operation is not ProcoreOperation.DELETE and e.content is not None:
        payload = domain.procore_payload(e.module, e.entry_id, e.work_date, e.job_site_id, e.dims, e.content, mappings)
    return PublishToProcore(
        account_id=e.account_id,
        request_id=request_id,
        entry_id=e.entry_id,
        entry_version=state.version,
        module=e.module,
        operation=operation,
        procore_company_id=company,
        procore_project_id=project,
        work_date=e.work_date,
        payload=payload,
        marker=domain.marker_for(e.entry_id),
        procore_id=state.procore_id,
        published_updated_at=e.procore_updated_at,
        published_payload=e.published_payload,
        force=force,
    )


def _message(e: StoredEntry, request: PublishToProcore, topics: Topics, headers: dict[str, str]) -> OutboxMessage:
    # keyed by job site, like every event of it, so one job site's requests stay in order
    return OutboxMessage(topics.publish_requests, f"{e.account_id}:{e.job_site_id}", request.model_dump_json(), headers)


async def publish_entries(
    conn: asyncpg.Connection, cmd: PublishEntries, topics: Topics, policy: RedrivePolicy = RedrivePolicy()
) -> int:
    """Move eligible entries to Publishing and queue one publish request each (transactional outbox).

    Each request is also kept with its entry, so it can be re-driven if no result comes back. An
    eligible entry the command cannot be carried out for (no Procore company chosen, its job site's
    project not mapped, content Procore cannot take) becomes Failed with the reason, in its history too.

    The requester's permission is checked here, where the entries live, whoever sent the command: a command
    without a permissions list or without procore.publish changes nothing and is recorded as rejected, with the
    reason, in the history of the entries it named."""
    entries = await repo.lock_entries_in_scope(conn, cmd)
    refusal = domain.requester_refusal(cmd.permissions)
    if refusal is not None:
        log.warning(
            "refused %s %s of %s by %s %s: %s",
            cmd.type,
            cmd.event_id,
            cmd.account_id,
            cmd.requester_kind.value,
            cmd.requested_by,
            refusal,
        )
        await repo.add_history(
            conn,
            [(e.entry_id, None, cmd.action.value, cmd.requested_by, domain.REJECTED, refusal) for e in entries],
        )
        return 0
    eligible = [e for e in entries if e.state.status in domain.PUBLISHABLE[cmd.action]]
    if not eligible:
        return 0
    mappings = await repo.load_account_mappings(conn, cmd.account_id)
    headers = trace_headers()
    force = cmd.action is PublishAction.FORCE_PUBLISH
    to_save: list[StoredEntry] = []
    queued: list[repo.QueuedPublish] = []
    history: list[History] = []
    refusals: set[str] = set()
    for e, members in zip(eligible, await repo.timelog_ids_of(conn, eligible), strict=True):
        request_id = uuid.uuid4()
        reason = domain.publish_blocker(mappings, e.job_site_id)
        moved = None if reason else domain.publish_requested(e.state, cmd.action, request_id, members)
        if moved is not None:
            state, operation = moved
            try:
                request = _publish_request(e, state, operation, request_id, mappings, force)
            except domain.FractionalQuantity as error:
                reason = str(error)
            else:
                queued.append(repo.QueuedPublish(e.entry_id, request_id, _message(e, request, topics, headers)))
                to_save.append(replace(e, state=state))
                history.append((e.entry_id, request_id, cmd.action.value, cmd.requested_by, None, operation.value))
                continue
        reason = reason or domain.NOTHING_TO_PUBLISH
        refusals.add(reason)
        to_save.append(replace(e, state=domain.publish_refused(e.state, reason)))
        history.append((e.entry_id, None, cmd.action.value, cmd.requested_by, PublishOutcome.FAILED.value, reason))
    if refusals:
        log.warning(
            "account %s: %d entries failed without a request: %s",
            cmd.account_id,
            len(to_save) - len(queued),
            "; ".join(sorted(refusals)),
        )
    await repo.save_entries(conn, to_save)
    await add_to_outbox(conn, [q.message for q in queued])
    await repo.keep_publish_requests(conn, queued, policy.after_s)
    await repo.add_history(conn, history)
    return len(queued)


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
    await repo.forget_publish_requests(conn, [(entry.entry_id, result.request_id)])
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


async def redrive_stalled_publishes(conn: asyncpg.Connection, topics: Topics, policy: RedrivePolicy) -> int:
    """Send again, unchanged (same request_id), every publish request whose result is overdue; returns how many.

    Safe to repeat: the publisher keeps each request once and answers a request it already finished
    with its stored result, and a result for any request but an entry's current one changes nothing.
    Each re-drive waits longer than the one before (capped), and is written to the entry's history."""
    due = await repo.claim_due_publishes(conn, policy.batch)
    await repo.forget_publish_requests(conn, [(d.entry_id, d.request_id) for d in due if not d.current])
    redriven: list[tuple[uuid.UUID, OutboxMessage, float]] = []
    history: list[History] = []
    for d in due:
        if not d.current:
            continue
        message = d.message or await _rebuild_lost_request(conn, d, topics, history)
        if message is None:
            continue
        delay = domain.redrive_delay(d.redrives + 1, policy.after_s, policy.max_interval_s)
        redriven.append((d.entry_id, message, delay))
        note = f"No result {d.waited_s:.0f} s after the request was queued; sent it again (re-drive {d.redrives + 1})"
        history.append((d.entry_id, d.request_id, REDRIVEN, None, None, note))
    await add_to_outbox(conn, [message for _, message, _ in redriven])
    await repo.publishes_redriven(conn, redriven)
    await repo.add_history(conn, history)
    if redriven:
        log.warning("re-drove %d publish requests whose result is overdue", len(redriven))
    return len(redriven)


async def _rebuild_lost_request(
    conn: asyncpg.Connection, due: repo.DuePublish, topics: Topics, history: list[History]
) -> OutboxMessage | None:
    """A request queued before requests were kept: build it again from the entry, with the same request_id
    (force is not known any more: a conflict then fails the entry, and the user decides). An entry it can no
    longer be built for is failed with the reason."""
    found = await repo.lock_entries(conn, "entry_id = $1", due.entry_id)
    if not found:
        return None
    e = found[0]
    mappings = await repo.load_account_mappings(conn, e.account_id)
    operation = domain.operation_for(e.state)
    reason = domain.publish_blocker(mappings, e.job_site_id) or (None if operation else domain.NOTHING_TO_PUBLISH)
    if reason is None and operation is not None:
        try:
            request = _publish_request(e, e.state, operation, due.request_id, mappings, force=False)
        except domain.FractionalQuantity as error:
            reason = str(error)
        else:
            return _message(e, request, topics, trace_headers())
    message = f"The publish request got no result and cannot be sent again: {reason}"
    state = domain.result_arrived(e.state, due.request_id, PublishOutcome.FAILED, None, message)
    if state is not None:
        await repo.save_entries(conn, [replace(e, state=state)])
    await repo.forget_publish_requests(conn, [(e.entry_id, due.request_id)])
    history.append((e.entry_id, due.request_id, REDRIVEN, None, PublishOutcome.FAILED.value, message))
    return None
