"""The aggregator's control use cases against an in-memory store (no broker, no database): publish commands,
re-drives, publish results, Procore record changes and reference names. The same handlers run against PostgreSQL
in the integration tests (`test_aggregator_properties`, `test_aggregator_publish_recovery`, `test_aggregator_flow`,
`test_aggregator_redrive`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from services.aggregator import handlers
from services.aggregator.adapters.entries import StoredEntry
from services.aggregator.adapters.history import HistoryRow
from services.aggregator.adapters.publish_requests import DuePublish, QueuedPublish
from services.aggregator.adapters.replica import AccountMappings
from services.aggregator.domain import EntryState, Status
from shared.events import (
    EntriesScope,
    Module,
    Permission,
    ProcoreChange,
    ProcoreEntity,
    ProcorePublishFinished,
    ProcoreRecordChanged,
    PublishAction,
    PublishEntries,
    PublishOutcome,
    PublishToProcore,
    ReferenceDeleted,
    ReferenceKind,
    ReferenceUpserted,
)
from shared.labels import CHANGED_IN_PROCORE, DELETED_IN_PROCORE
from shared.outbox import OutboxMessage
from shared.topics import Topics

ACCOUNT = "acct-1"
PUBLISHED_AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CLOCK_IN = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


class FakeStore:
    """Entries, history, kept requests and names in dictionaries: what `adapters.store.Store` keeps in tables."""

    def __init__(self, *entries: StoredEntry, mappings: AccountMappings | None = None) -> None:
        self.entries = {e.entry_id: e for e in entries}
        self.mappings = mappings or AccountMappings()
        self.history: list[HistoryRow] = []
        self.forgotten: list[tuple[uuid.UUID, uuid.UUID]] = []
        self.names: dict[tuple[str, ReferenceKind, str], tuple[str, str | None]] = {}
        self.marked: set[str] = set()
        self.outbox: list[OutboxMessage] = []
        self.kept: list[QueuedPublish] = []
        self.due: list[DuePublish] = []
        self.redriven: list[tuple[uuid.UUID, OutboxMessage, float]] = []

    async def lock_entries_in_scope(self, cmd: PublishEntries) -> list[StoredEntry]:
        assert isinstance(cmd.scope, EntriesScope)
        return [self.entries[i] for i in sorted(cmd.scope.entry_ids, key=lambda i: i.int) if i in self.entries]

    async def has_remap_marks(self, account_id: str) -> bool:
        return account_id in self.marked

    async def load_account_mappings(self, account_id: str) -> AccountMappings:
        return self.mappings

    async def timelog_ids_of(self, entries: Sequence[StoredEntry]) -> list[frozenset[str]]:
        return [frozenset({"t1", "t2"}) for _ in entries]

    async def clock_spans_of(
        self, account_id: str, members: Sequence[frozenset[str]]
    ) -> list[list[tuple[datetime | None, datetime | None]]]:
        return [[(CLOCK_IN, CLOCK_IN + timedelta(hours=8))] if ids else [] for ids in members]

    async def queue_messages(self, messages: Sequence[OutboxMessage]) -> None:
        self.outbox += messages

    async def keep_publish_requests(self, queued: Sequence[QueuedPublish], redrive_after_s: float) -> None:
        self.kept += queued

    async def claim_auto_publish(self, limit: int) -> list[tuple[str, Module, list[uuid.UUID]]]:
        return []

    async def claim_due_publishes(self, limit: int) -> list[DuePublish]:
        return self.due[:limit]

    async def publishes_redriven(self, redriven: Sequence[tuple[uuid.UUID, OutboxMessage, float]]) -> None:
        self.redriven += redriven

    async def lock_entry(self, entry_id: uuid.UUID) -> StoredEntry | None:
        return self.entries.get(entry_id)

    async def lock_entries_of_procore_record(
        self, account_id: str, module: Module, procore_id: int
    ) -> list[StoredEntry]:
        return sorted(
            (
                e
                for e in self.entries.values()
                if e.account_id == account_id and e.module is module and e.state.procore_id == procore_id
            ),
            key=lambda e: e.entry_id.int,
        )

    async def save_entries(self, changed: Sequence[StoredEntry]) -> None:
        self.entries.update({e.entry_id: e for e in changed})

    async def delete_entries(self, entry_ids: Sequence[uuid.UUID]) -> None:
        for entry_id in entry_ids:
            del self.entries[entry_id]

    async def add_history(self, rows: Sequence[HistoryRow]) -> None:
        self.history += rows

    async def forget_publish_requests(self, requests: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
        self.forgotten += requests

    async def save_reference_name(
        self, account_id: str, kind: ReferenceKind, entity_id: str, name: str | None, number: str | None
    ) -> None:
        if name is None:
            self.names.pop((account_id, kind, entity_id), None)
        else:
            self.names[(account_id, kind, entity_id)] = (name, number)


def entry(state: EntryState, module: Module = Module.TIMECARD) -> StoredEntry:
    return StoredEntry(
        entry_id=uuid.uuid4(),
        account_id=ACCOUNT,
        module=module,
        job_site_id="site-1",
        work_date=date(2026, 3, 2),
        entry_key="k",
        dims={"employee_id": "e1", "pay_id": "p1", "cost_code_id": None, "pay_class_id": None},
        content={"hours": "8.00"},
        state=state,
        procore_updated_at=PUBLISHED_AT,
        published_payload={"hours": "8.00"},
    )


def publishing(request_id: uuid.UUID, procore_id: int | None = None) -> EntryState:
    return EntryState(
        status=Status.PUBLISHING,
        fingerprint="f2",
        version=2,
        procore_id=procore_id,
        publishing_request_id=request_id,
        publishing_fingerprint="f2",
        publishing_timelog_ids=frozenset({"t1"}),
    )


def published(procore_id: int = 77) -> EntryState:
    return EntryState(
        status=Status.PUBLISHED,
        fingerprint="f1",
        procore_id=procore_id,
        published_fingerprint="f1",
        published_timelog_ids=frozenset({"t1"}),
    )


def finished(e: StoredEntry, request_id: uuid.UUID, outcome: PublishOutcome, **more: object) -> ProcorePublishFinished:
    return ProcorePublishFinished.model_validate(
        {
            "account_id": ACCOUNT,
            "request_id": request_id,
            "entry_id": e.entry_id,
            "entry_version": e.state.version,
            "module": e.module,
            "outcome": outcome,
            **more,
        }
    )


async def test_a_published_result_publishes_the_entry_keeps_what_procore_holds_and_forgets_the_request() -> None:
    request = uuid.uuid4()
    e = entry(publishing(request))
    store = FakeStore(e)
    updated_at = PUBLISHED_AT + timedelta(hours=1)
    result = finished(
        e, request, PublishOutcome.PUBLISHED, procore_id=77, procore_updated_at=updated_at, published_payload={"x": 1}
    )

    assert await handlers.apply_publish_result(store, result)

    now = store.entries[e.entry_id]
    assert now.state.status is Status.PUBLISHED
    assert now.state.procore_id == 77
    assert now.state.published_timelog_ids == frozenset({"t1"})
    assert now.state.publishing_request_id is None
    assert (now.procore_updated_at, now.published_payload) == (updated_at, {"x": 1})
    assert store.forgotten == [(e.entry_id, request)]
    assert store.history == [HistoryRow(e.entry_id, request, "result", None, "published", None)]


async def test_a_failed_result_fails_the_entry_with_the_message_and_keeps_what_procore_held() -> None:
    request = uuid.uuid4()
    e = entry(publishing(request, procore_id=5))
    store = FakeStore(e)

    assert await handlers.apply_publish_result(store, finished(e, request, PublishOutcome.FAILED, message="HTTP 422"))

    now = store.entries[e.entry_id]
    assert (now.state.status, now.state.last_error) == (Status.FAILED, "HTTP 422")
    assert (now.procore_updated_at, now.published_payload) == (e.procore_updated_at, e.published_payload)
    assert store.history == [HistoryRow(e.entry_id, request, "result", None, "failed", "HTTP 422")]


async def test_a_result_of_an_older_request_changes_nothing() -> None:
    e = entry(publishing(uuid.uuid4()))
    store = FakeStore(e)

    assert not await handlers.apply_publish_result(store, finished(e, uuid.uuid4(), PublishOutcome.PUBLISHED))

    assert store.entries == {e.entry_id: e}
    assert store.history == []
    assert store.forgotten == []


async def test_a_result_for_an_entry_that_is_gone_changes_nothing() -> None:
    store = FakeStore()
    assert not await handlers.apply_publish_result(
        store, finished(entry(publishing(uuid.uuid4())), uuid.uuid4(), PublishOutcome.PUBLISHED)
    )
    assert store.history == []


async def test_deleting_in_procore_an_entry_whose_timelogs_are_gone_removes_it() -> None:
    request = uuid.uuid4()
    e = entry(replace(publishing(request, procore_id=77), fingerprint=None, deleted_timelog_ids=frozenset({"t1"})))
    store = FakeStore(e)

    assert await handlers.apply_publish_result(store, finished(e, request, PublishOutcome.DELETED))

    assert store.entries == {}
    assert store.history == [HistoryRow(e.entry_id, request, "result", None, "deleted", None)]


def record_changed(change: ProcoreChange, procore_id: int = 77, **more: object) -> ProcoreRecordChanged:
    return ProcoreRecordChanged.model_validate(
        {
            "account_id": ACCOUNT,
            "procore_company_id": 1,
            "module": Module.TIMECARD,
            "procore_id": procore_id,
            "change": change,
            **more,
        }
    )


async def test_a_record_deleted_in_procore_fails_the_published_entry_that_owns_it_and_says_so() -> None:
    mine, other = entry(published(77)), entry(published(78))
    store = FakeStore(mine, other)

    assert await handlers.apply_record_changed(store, record_changed(ProcoreChange.DELETED))

    assert store.entries[mine.entry_id].state.status is Status.FAILED
    assert store.entries[mine.entry_id].state.last_error == DELETED_IN_PROCORE
    assert store.entries[other.entry_id] == other
    assert store.history == [
        HistoryRow(mine.entry_id, None, handlers.PROCORE_CHANGE, None, "conflict", DELETED_IN_PROCORE)
    ]


async def test_a_change_older_than_our_publish_is_no_conflict_but_a_newer_one_is() -> None:
    e = entry(published())
    store = FakeStore(e)
    older = record_changed(ProcoreChange.UPDATED, changed_at=PUBLISHED_AT - timedelta(seconds=5))

    assert not await handlers.apply_record_changed(store, older)
    assert store.entries[e.entry_id] == e
    assert store.history == []

    newer = record_changed(ProcoreChange.UPDATED, changed_at=PUBLISHED_AT + timedelta(seconds=5))
    assert await handlers.apply_record_changed(store, newer)
    assert store.entries[e.entry_id].state.last_error == CHANGED_IN_PROCORE


async def test_reference_names_are_kept_and_forgotten() -> None:
    store = FakeStore()
    upserted = ReferenceUpserted(
        account_id=ACCOUNT, kind=ReferenceKind.COST_CODE, entity_id="cc-1", name="Concrete", number="03"
    )
    await handlers.apply_reference_event(store, upserted)
    assert store.names == {(ACCOUNT, ReferenceKind.COST_CODE, "cc-1"): ("Concrete", "03")}

    await handlers.apply_reference_event(
        store, ReferenceDeleted(account_id=ACCOUNT, kind=ReferenceKind.COST_CODE, entity_id="cc-1")
    )
    assert store.names == {}


def mapped() -> AccountMappings:
    """A connected account whose job site, employee and pay ID are mapped."""
    m = AccountMappings(procore_company_id=1, enabled_modules=frozenset({Module.TIMECARD}))
    m.ids[(ProcoreEntity.PROJECT.value, "site-1", 0)] = (100, "Tower")
    m.ids[(ProcoreEntity.EMPLOYEE.value, "e1", 0)] = (200, "Ann")
    m.ids[(ProcoreEntity.PAYROLL_TYPE.value, "p1", 0)] = (300, "Regular")
    return m


def publish(*entries: StoredEntry, permissions: tuple[str, ...] | None = (Permission.PUBLISH,)) -> PublishEntries:
    return PublishEntries(
        account_id=ACCOUNT,
        module=Module.TIMECARD,
        action=PublishAction.PUBLISH,
        scope=EntriesScope(entry_ids=[e.entry_id for e in entries]),
        requested_by="user-1",
        permissions=None if permissions is None else list(permissions),
    )


TODO = EntryState(status=Status.TODO, fingerprint="f1")


async def test_publishing_a_todo_entry_queues_one_request_for_its_project_and_keeps_it_for_re_drives() -> None:
    e = entry(TODO)
    store = FakeStore(e, mappings=mapped())
    topics = Topics()

    assert await handlers.publish_entries(store, publish(e), topics) == 1

    now = store.entries[e.entry_id].state
    assert now.status is Status.PUBLISHING
    assert now.publishing_timelog_ids == frozenset({"t1", "t2"})
    [message] = store.outbox
    assert (message.topic, message.key) == (topics.publish_requests, f"{ACCOUNT}:site-1")
    request = PublishToProcore.model_validate_json(message.payload)
    assert request.request_id == now.publishing_request_id
    assert request.entry_id == e.entry_id
    assert (request.procore_company_id, request.procore_project_id) == (1, 100)
    assert (request.payload["party_id"], request.payload["timecard_time_type_id"]) == (200, 300)
    assert request.clock is not None  # the timecard's clock times, from its timelogs
    assert (request.clock.first_in, request.clock.last_out) == (CLOCK_IN, CLOCK_IN + timedelta(hours=8))
    assert store.kept == [QueuedPublish(e.entry_id, request.request_id, message)]
    assert store.history == [HistoryRow(e.entry_id, request.request_id, "publish", "user-1", None, "create")]


async def test_a_command_without_the_publish_permission_changes_nothing_and_says_so_in_the_history() -> None:
    e = entry(TODO)
    store = FakeStore(e, mappings=mapped())

    assert await handlers.publish_entries(store, publish(e, permissions=()), Topics()) == 0

    assert store.entries[e.entry_id] == e
    assert store.outbox == []
    assert store.kept == []
    [row] = store.history
    assert (row.entry_id, row.outcome) == (e.entry_id, "rejected")
    assert row.message


async def test_an_entry_of_an_unmapped_job_site_fails_with_the_reason_and_no_request() -> None:
    e = entry(TODO)
    m = mapped()
    del m.ids[(ProcoreEntity.PROJECT.value, "site-1", 0)]
    store = FakeStore(e, mappings=m)

    assert await handlers.publish_entries(store, publish(e), Topics()) == 0

    now = store.entries[e.entry_id].state
    assert now.status is Status.FAILED
    assert now.last_error is not None
    assert "not mapped" in now.last_error
    assert store.outbox == []
    assert store.kept == []
    assert store.history == [HistoryRow(e.entry_id, None, "publish", "user-1", "failed", now.last_error)]


async def test_an_overdue_request_is_sent_again_unchanged_and_a_superseded_one_is_forgotten() -> None:
    request, old = uuid.uuid4(), uuid.uuid4()
    e = entry(publishing(request))
    message = OutboxMessage("requests", "k", "{}", {})
    store = FakeStore(e)
    store.due = [
        DuePublish(e.entry_id, request, message, redrives=0, waited_s=130.0, current=True),
        DuePublish(e.entry_id, old, message, redrives=3, waited_s=900.0, current=False),
    ]
    policy = handlers.RedrivePolicy(after_s=120.0, max_interval_s=3600.0)

    assert await handlers.redrive_stalled_publishes(store, Topics(), policy) == 1

    assert store.outbox == [message]
    assert [(entry_id, sent) for entry_id, sent, _ in store.redriven] == [(e.entry_id, message)]
    assert store.redriven[0][2] > 120.0  # each re-drive waits longer than the one before
    assert store.forgotten == [(e.entry_id, old)]
    [row] = store.history
    assert (row.entry_id, row.request_id, row.action) == (e.entry_id, request, handlers.REDRIVEN)
