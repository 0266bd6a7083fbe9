"""Publishing: publish commands, their results, auto-publish and re-drives of overdue requests (transactional
outbox)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from services.aggregator import domain
from services.aggregator.adapters.entries import (
    StoredEntry,
)
from services.aggregator.adapters.history import HistoryRow
from services.aggregator.adapters.publish_requests import (
    DuePublish,
    QueuedPublish,
)
from services.aggregator.adapters.replica import AccountMappings
from shared.events import (
    EntriesScope,
    Module,
    Permission,
    ProcoreEntity,
    ProcoreOperation,
    ProcorePublishFinished,
    PublishAction,
    PublishEntries,
    PublishOutcome,
    PublishToProcore,
    SystemPrincipal,
    TimecardClock,
)
from shared.outbox import OutboxMessage, trace_headers
from shared.topics import Topics

log = logging.getLogger(__name__)


REDRIVEN = "re-driven"
"""The history action of a publish request sent again because its result was overdue."""


@dataclass(frozen=True)
class RedrivePolicy:
    """When a publish request that got no result is sent again (see `redrive_stalled_publishes`)."""

    after_s: float = 120.0
    max_interval_s: float = 3600.0
    batch: int = 200


class Publishing(Protocol):
    """What publishing uses (`adapters.store.Store` in the service): entries, their history, the requests they wait
    on, the replica of the account's mappings, and the outbox."""

    async def lock_entries_in_scope(self, cmd: PublishEntries) -> list[StoredEntry]: ...

    async def lock_entry(self, entry_id: uuid.UUID) -> StoredEntry | None: ...

    async def has_remap_marks(self, account_id: str) -> bool: ...

    async def load_account_mappings(self, account_id: str) -> AccountMappings: ...

    async def timelog_ids_of(self, entries: Sequence[StoredEntry]) -> list[frozenset[str]]: ...

    async def clock_spans_of(
        self, account_id: str, members: Sequence[frozenset[str]]
    ) -> list[list[tuple[datetime | None, datetime | None]]]: ...

    async def save_entries(self, changed: Sequence[StoredEntry]) -> None: ...

    async def add_history(self, rows: Sequence[HistoryRow]) -> None: ...

    async def queue_messages(self, messages: Sequence[OutboxMessage]) -> None: ...

    async def keep_publish_requests(self, queued: Sequence[QueuedPublish], redrive_after_s: float) -> None: ...

    async def forget_publish_requests(self, requests: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None: ...

    async def claim_auto_publish(self, limit: int) -> list[tuple[str, Module, list[uuid.UUID]]]: ...

    async def claim_due_publishes(self, limit: int) -> list[DuePublish]: ...

    async def publishes_redriven(self, redriven: Sequence[tuple[uuid.UUID, OutboxMessage, float]]) -> None: ...


def _publish_request(
    e: StoredEntry,
    state: domain.EntryState,
    operation: ProcoreOperation,
    request_id: uuid.UUID,
    mappings: AccountMappings,
    force: bool,
    clock_spans: Sequence[tuple[datetime | None, datetime | None]] = (),
) -> PublishToProcore:
    """The request for the publisher; raises FractionalQuantity when Procore cannot take the content.

    A timecard's request carries its clock times (`clock_spans`: its timelogs' clock-in/out), for Procore projects
    whose timesheet takes start and stop times."""
    company = mappings.procore_company_id
    project = mappings.procore_id(ProcoreEntity.PROJECT, e.job_site_id)
    assert company is not None, "checked by domain.publish_blocker"
    assert project is not None, "checked by domain.publish_blocker"
    payload = {}
    timecard = e.module is Module.TIMECARD and operation is not ProcoreOperation.DELETE
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
        clock=TimecardClock.of_spans(clock_spans) if timecard else None,
        person_name=mappings.procore_name(ProcoreEntity.EMPLOYEE, str(e.dims.get("employee_id"))) if timecard else None,
        project_name=mappings.procore_name(ProcoreEntity.PROJECT, e.job_site_id),
    )


def _message(e: StoredEntry, request: PublishToProcore, topics: Topics, headers: dict[str, str]) -> OutboxMessage:
    # keyed by job site, like every event of it, so one job site's requests stay in order
    return OutboxMessage(topics.publish_requests, f"{e.account_id}:{e.job_site_id}", request.model_dump_json(), headers)


async def publish_entries(
    store: Publishing, cmd: PublishEntries, topics: Topics, policy: RedrivePolicy = RedrivePolicy()
) -> int:
    """Move eligible entries to Publishing and queue one publish request each (transactional outbox).

    Each request is also kept with its entry, so it can be re-driven if no result comes back. An
    eligible entry the command cannot be carried out for (no Procore company chosen, its job site's
    project not mapped, content Procore cannot take) becomes Failed with the reason, in its history too.

    The requester's permission is checked here, where the entries live, whoever sent the command: a command
    without a permissions list or without procore.publish changes nothing and is recorded as rejected, with the
    reason, in the history of the entries it named."""
    entries = await store.lock_entries_in_scope(cmd)
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
        await store.add_history(
            [
                HistoryRow(e.entry_id, None, cmd.action.value, cmd.requested_by, domain.REJECTED, refusal)
                for e in entries
            ],
        )
        return 0
    mappings = None
    if await store.has_remap_marks(cmd.account_id):
        mappings = await store.load_account_mappings(cmd.account_id)
        entries = await _revalidated(store, entries, mappings)
    eligible = [e for e in entries if e.state.status in domain.PUBLISHABLE[cmd.action]]
    if not eligible:
        return 0
    if mappings is None:
        mappings = await store.load_account_mappings(cmd.account_id)
    headers = trace_headers()
    force = cmd.action is PublishAction.FORCE_PUBLISH
    to_save: list[StoredEntry] = []
    queued: list[QueuedPublish] = []
    history: list[HistoryRow] = []
    refusals: set[str] = set()
    members_of = await store.timelog_ids_of(eligible)
    timecards = [m if e.module is Module.TIMECARD else frozenset() for e, m in zip(eligible, members_of, strict=True)]
    spans_of = await store.clock_spans_of(cmd.account_id, timecards)
    for e, members, spans in zip(eligible, members_of, spans_of, strict=True):
        request_id = uuid.uuid4()
        reason = domain.publish_blocker(mappings, e.job_site_id)
        moved = None if reason else domain.publish_requested(e.state, cmd.action, request_id, members)
        if moved is not None:
            state, operation = moved
            try:
                request = _publish_request(e, state, operation, request_id, mappings, force, spans)
            except domain.FractionalQuantity as error:
                reason = str(error)
            else:
                queued.append(QueuedPublish(e.entry_id, request_id, _message(e, request, topics, headers)))
                to_save.append(replace(e, state=state))
                history.append(
                    HistoryRow(e.entry_id, request_id, cmd.action.value, cmd.requested_by, None, operation.value)
                )
                continue
        reason = reason or domain.NOTHING_TO_PUBLISH
        refusals.add(reason)
        to_save.append(replace(e, state=domain.publish_refused(e.state, reason)))
        history.append(
            HistoryRow(e.entry_id, None, cmd.action.value, cmd.requested_by, PublishOutcome.FAILED.value, reason)
        )
    if refusals:
        log.warning(
            "account %s: %d entries failed without a request: %s",
            cmd.account_id,
            len(to_save) - len(queued),
            "; ".join(sorted(refusals)),
        )
    await store.save_entries(to_save)
    await store.queue_messages([q.message for q in queued])
    await store.keep_publish_requests(queued, policy.after_s)
    await store.add_history(history)
    return len(queued)


async def _revalidated(store: Publishing, entries: list[StoredEntry], mappings: AccountMappings) -> list[StoredEntry]:
    """A publish command while the account's remap is pending (mapped a moment ago): the entries it names are
    re-checked against the mappings now first, so it acts on what the user just mapped (they are locked here; the
    round re-checks them again, which changes nothing)."""
    out: list[StoredEntry] = []
    changed: list[StoredEntry] = []
    for e in entries:
        state: domain.EntryState | None = e.state
        if e.content is not None:
            errors = domain.validate(e.module, e.job_site_id, e.dims, e.content, mappings)
            state = domain.errors_changed(e.state, errors)
        if state is None or state == e.state:
            out.append(e)
            continue
        moved = replace(e, state=state)
        changed.append(moved)
        out.append(moved)
    await store.save_entries(changed)
    return out


class PublishResults(Protocol):
    """What `apply_publish_result` uses (`adapters.store.Store` in the service)."""

    async def lock_entry(self, entry_id: uuid.UUID) -> StoredEntry | None: ...

    async def save_entries(self, changed: Sequence[StoredEntry]) -> None: ...

    async def delete_entries(self, entry_ids: Sequence[uuid.UUID]) -> None: ...

    async def add_history(self, rows: Sequence[HistoryRow]) -> None: ...

    async def forget_publish_requests(self, requests: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None: ...


async def apply_publish_result(store: PublishResults, result: ProcorePublishFinished) -> bool:
    """Store what the publisher did; results of any request but an entry's current one change nothing."""
    entry = await store.lock_entry(result.entry_id)
    if entry is None:
        return False
    state = domain.result_arrived(entry.state, result.request_id, result.outcome, result.procore_id, result.message)
    if state is entry.state:
        return False
    await store.add_history(
        [HistoryRow(entry.entry_id, result.request_id, "result", None, result.outcome.value, result.message)]
    )
    if state is None:
        await store.delete_entries([entry.entry_id])
        return True
    await store.forget_publish_requests([(entry.entry_id, result.request_id)])
    published = result.outcome.value in ("published", "deleted")
    await store.save_entries(
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


AUTO_PUBLISHER = SystemPrincipal("system:auto-publish", (Permission.PUBLISH,))
"""Who auto-publish requests in: entries' publish history shows it."""


async def auto_publish(store: Publishing, topics: Topics, policy: RedrivePolicy, limit: int = 500) -> int:
    """Publish the entries that are due under their account's auto-publish setting (issue 13); returns how many
    requests were queued.

    Through the same path as a user's Publish (`publish_entries`, action Publish, never Force publish): only To do
    and Updated entries, so Failed ones and conflicts wait for a person; the history names the requester
    `system:auto-publish`."""
    queued = 0
    for account_id, module, entry_ids in await store.claim_auto_publish(limit):
        cmd = PublishEntries(
            account_id=account_id,
            module=module,
            action=PublishAction.PUBLISH,
            scope=EntriesScope(entry_ids=entry_ids),
            **AUTO_PUBLISHER.requester(),
        )
        queued += await publish_entries(store, cmd, topics, policy)
    if queued:
        log.info("auto-published %d entries", queued)
    return queued


async def redrive_stalled_publishes(store: Publishing, topics: Topics, policy: RedrivePolicy) -> int:
    """Send again, unchanged (same request_id), every publish request whose result is overdue; returns how many.

    Safe to repeat: the publisher keeps each request once and answers a request it already finished
    with its stored result, and a result for any request but an entry's current one changes nothing.
    Each re-drive waits longer than the one before (capped), and is written to the entry's history."""
    due = await store.claim_due_publishes(policy.batch)
    await store.forget_publish_requests([(d.entry_id, d.request_id) for d in due if not d.current])
    redriven: list[tuple[uuid.UUID, OutboxMessage, float]] = []
    history: list[HistoryRow] = []
    for d in due:
        if not d.current:
            continue
        message = d.message or await _rebuild_lost_request(store, d, topics, history)
        if message is None:
            continue
        delay = domain.redrive_delay(d.redrives + 1, policy.after_s, policy.max_interval_s)
        redriven.append((d.entry_id, message, delay))
        note = f"No result {d.waited_s:.0f} s after the request was queued; sent it again (re-drive {d.redrives + 1})"
        history.append(HistoryRow(d.entry_id, d.request_id, REDRIVEN, None, None, note))
    await store.queue_messages([message for _, message, _ in redriven])
    await store.publishes_redriven(redriven)
    await store.add_history(history)
    if redriven:
        log.warning("re-drove %d publish requests whose result is overdue", len(redriven))
    return len(redriven)


async def _rebuild_lost_request(
    store: Publishing, due: DuePublish, topics: Topics, history: list[HistoryRow]
) -> OutboxMessage | None:
    """A request queued before requests were kept: build it again from the entry, with the same request_id
    (force is not known any more: a conflict then fails the entry, and the user decides). An entry it can no
    longer be built for is failed with the reason."""
    e = await store.lock_entry(due.entry_id)
    if e is None:
        return None
    mappings = await store.load_account_mappings(e.account_id)
    operation = domain.operation_for(e.state)
    reason = domain.publish_blocker(mappings, e.job_site_id) or (None if operation else domain.NOTHING_TO_PUBLISH)
    if reason is None and operation is not None:
        try:
            members = await store.timelog_ids_of([e])
            spans = (await store.clock_spans_of(e.account_id, members))[0]
            request = _publish_request(e, e.state, operation, due.request_id, mappings, False, spans)
        except domain.FractionalQuantity as error:
            reason = str(error)
        else:
            return _message(e, request, topics, trace_headers())
    message = f"The publish request got no result and cannot be sent again: {reason}"
    state = domain.result_arrived(e.state, due.request_id, PublishOutcome.FAILED, None, message)
    if state is not None:
        await store.save_entries([replace(e, state=state)])
    await store.forget_publish_requests([(e.entry_id, due.request_id)])
    history.append(HistoryRow(e.entry_id, due.request_id, REDRIVEN, None, PublishOutcome.FAILED.value, message))
    return None
