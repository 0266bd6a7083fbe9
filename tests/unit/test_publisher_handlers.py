"""The publisher's use cases (services/publisher/handlers.py) on in-memory fakes of their ports — the attempt log and
one project's Procore records — with no broker, database or HTTP: each request is taken once, Procore ends up with
exactly one record per entry whatever answers get lost, nobody's edit is overwritten, and every way a request ends
is stored with its reason."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.publisher import handlers
from services.publisher.adapters.attempts import Pending, Received, Started
from services.publisher.adapters.procore import BulkAnswer, MaybeCreated
from services.publisher.domain import RESOURCES
from services.publisher.lease import Lease, LeaseLost
from shared.events import Module, ProcoreOperation, ProcorePublishFinished, PublishOutcome, PublishToProcore
from shared.procore import ProcoreError

DAY = date(2026, 11, 27)
COMPANY, PROJECT = 10, 20


@dataclass
class Stored:
    request: PublishToProcore
    state: str = "pending"
    tries: int = 0
    errors: int = 0
    result: ProcorePublishFinished | None = None
    deleted: list[int] = field(default_factory=list)


@dataclass
class FakeAttempts:
    """The attempt log in memory: one row per request id."""

    rows: dict[UUID, Stored] = field(default_factory=dict)
    finished: list[tuple[ProcorePublishFinished, bool]] = field(default_factory=list)
    """Each stored result and whether it was marked uncertain (a create that may have landed)."""

    async def receive(self, incoming: list[tuple[PublishToProcore, dict[str, str]]]) -> list[Received]:
        out = []
        for request, _trace in incoming:
            row = self.rows.get(request.request_id)
            if row is None:
                self.rows[request.request_id] = Stored(request)
                out.append(Received(True, "pending", None))
            else:
                result = row.result.model_dump(mode="json") if row.result else None
                out.append(Received(False, row.state, result))
        return out

    async def start(self, request_id: Any, lease: Lease) -> Started:
        lease.check()
        row = self.rows[request_id]
        row.tries += 1
        return Started(row.tries, recovering=row.tries > 1, deleted_by_us=bool(row.deleted))

    async def note_deleted(self, request_id: Any, procore_id: int, lease: Lease) -> None:
        self.rows[request_id].deleted.append(procore_id)

    async def note_error(self, request_id: Any, message: str, lease: Lease) -> int:
        row = self.rows[request_id]
        row.errors += 1
        return row.errors

    async def finish(
        self,
        result: ProcorePublishFinished,
        lease: Lease,
        trace: dict[str, str],
        *,
        uncertain: bool = False,
        reconciled: bool = False,
    ) -> bool:
        lease.check()
        row = self.rows[result.request_id]
        row.state, row.result = "done", result
        self.finished.append((result, uncertain))
        return True


@dataclass
class FakeProcore:
    """One project's manpower logs in memory, with the faults a test asks for."""

    resource: Any = RESOURCES[Module.MANPOWER]
    max_attempts: int = 3
    start_stop_projects: set[int] = field(default_factory=set)
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    lose_answers: int = 0
    """The next creates are made, but their answers are lost (a 502 after the write)."""
    refuse: list[ProcoreError] = field(default_factory=list)
    """The next creates are refused with these errors (nothing made)."""
    posts: int = 0
    bulk_calls: int = 0
    ids: Any = field(default_factory=lambda: itertools.count(1000))

    @property
    def project_id(self) -> int:
        return PROJECT

    def _stamp(self, record: dict[str, Any]) -> dict[str, Any]:
        record["updated_at"] = datetime.now(UTC).isoformat()
        return dict(record)

    async def get(self, record_id: int) -> dict[str, Any] | None:
        found = self.records.get(record_id)
        return dict(found) if found else None

    async def list_day(self, work_date: date) -> list[dict[str, Any]]:
        return [dict(r) for r in self.records.values() if r.get("date") == work_date.isoformat()]

    async def list_company_timecards(self, work_date: date) -> list[dict[str, Any]]:
        return []

    async def list_span(self, first: date, last: date) -> list[dict[str, Any]]:
        return [dict(r) for r in self.records.values() if first.isoformat() <= r.get("date", "") <= last.isoformat()]

    async def list_company_timecards_span(self, first: date, last: date) -> list[dict[str, Any]]:
        return []

    async def bulk_create(self, items: list[dict[str, Any]]) -> BulkAnswer:
        self.bulk_calls += 1
        return BulkAnswer(created=[await self.create(item) for item in items])

    async def create(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.posts += 1
        if self.refuse:
            raise self.refuse.pop(0)
        record = self._stamp({**payload, "id": next(self.ids)})
        self.records[record["id"]] = record
        if self.lose_answers:
            self.lose_answers -= 1
            raise MaybeCreated(ProcoreError(502, "Bad Gateway"))
        return dict(record)

    async def update(self, record_id: int, payload: dict[str, Any]) -> dict[str, Any] | None:
        if record_id not in self.records:
            return None
        self.records[record_id].update(payload)
        return self._stamp(self.records[record_id])

    async def delete(self, record_id: int) -> bool:
        return self.records.pop(record_id, None) is not None


def request(**changes: Any) -> PublishToProcore:
    fields: dict[str, Any] = {
        "account_id": "acc",
        "entry_id": uuid4(),
        "entry_version": 1,
        "module": Module.MANPOWER,
        "operation": ProcoreOperation.CREATE,
        "procore_company_id": COMPANY,
        "procore_project_id": PROJECT,
        "work_date": DAY,
        "payload": {"date": DAY.isoformat(), "num_workers": 3, "num_hours": "8.00", "notes": "Crew A"},
        "marker": f"[mc:{uuid4().hex[:8]}]",
        **changes,
    }
    return PublishToProcore(**fields)


def lease() -> Lease:
    return Lease(COMPANY, token=1, valid_until=float("inf"))


@dataclass
class Publisher:
    """The use cases wired to the fakes, as a company's worker calls them."""

    attempts: FakeAttempts = field(default_factory=FakeAttempts)
    procore: FakeProcore = field(default_factory=FakeProcore)
    lease: Lease = field(default_factory=lease)

    async def take(self, *requests: PublishToProcore) -> None:
        await self.attempts.receive([(r, {}) for r in requests])

    async def work(self, r: PublishToProcore, max_tries: int = 8) -> ProcorePublishFinished:
        """One round of the request, as its worker runs it."""
        pending = Pending(r, "pending", self.attempts.rows[r.request_id].tries, {})
        return await handlers.process_request(
            pending, self.lease, self.attempts, lambda _r, _l: self.procore, max_tries=max_tries
        )


@dataclass
class Sink:
    sent: list[tuple[Any, str]] = field(default_factory=list)

    async def send(self, record: Any, reason: str, headers: dict[str, str] | None = None) -> None:
        self.sent.append((record, reason))


@dataclass
class Record:
    """A Kafka record as the consumer hands it over."""

    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "procore.publish-requests"
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    timestamp: int = 0


async def test_a_batch_is_stored_once_wakes_its_companies_and_dead_letters_what_cannot_be_read() -> None:
    attempts, sink, woken = FakeAttempts(), Sink(), list[int]()
    first, second = request(), request(procore_company_id=11)
    records = [
        Record(first.model_dump_json().encode()),
        Record(b"{not json"),
        Record(second.model_dump_json().encode()),
    ]
    again = await handlers.accept_records(records, attempts, woken.append, sink)
    assert again == 0
    assert woken == [COMPANY, 11]
    assert set(attempts.rows) == {first.request_id, second.request_id}
    assert [r.value for r, _ in sink.sent] == [b"{not json"]
    assert "JSON" in sink.sent[0][1]


async def test_a_request_answered_before_has_its_result_sent_again_and_is_not_worked_twice() -> None:
    p = Publisher()
    r = request()
    await p.take(r)
    await p.work(r)
    woken: list[int] = []
    again = await handlers.accept_records([Record(r.model_dump_json().encode())], p.attempts, woken.append, Sink())
    assert again == 1  # its stored result goes out again (the first send may be what was lost)
    assert woken == []
    assert p.procore.posts == 1


async def test_a_create_makes_one_record_with_our_marker_and_stores_published() -> None:
    p = Publisher()
    r = request()
    await p.take(r)
    result = await p.work(r)
    assert result.outcome is PublishOutcome.PUBLISHED
    (record,) = p.procore.records.values()
    assert result.procore_id == record["id"]
    assert r.marker in record["notes"]
    assert p.attempts.rows[r.request_id].state == "done"


async def test_a_lost_answer_to_a_create_is_looked_for_and_adopted_never_posted_twice() -> None:
    p = Publisher()
    p.procore.lose_answers = 1
    r = request()
    await p.take(r)
    result = await p.work(r)
    assert result.outcome is PublishOutcome.PUBLISHED
    assert len(p.procore.records) == 1
    assert p.procore.posts == 1
    assert result.procore_id == next(iter(p.procore.records))


async def test_a_retry_after_a_crash_adopts_the_record_the_first_try_made() -> None:
    p = Publisher()
    r = request()
    await p.take(r)
    p.attempts.rows[r.request_id].tries = 1  # a first try started, posted, and its process died before storing
    made = await p.procore.create(dict(r.payload, notes=f"Crew A {r.marker}"))
    result = await p.work(r)
    assert result.outcome is PublishOutcome.PUBLISHED
    assert result.procore_id == made["id"]
    assert len(p.procore.records) == 1


async def test_an_update_leaves_a_record_edited_in_procore_alone_and_says_so() -> None:
    p = Publisher()
    created = await p.procore.create({"date": DAY.isoformat(), "num_workers": 3, "num_hours": "8.00", "notes": "x"})
    published_at = datetime.fromisoformat(created["updated_at"])
    await p.procore.update(created["id"], {"num_workers": 9})  # a Procore user's edit
    r = request(
        operation=ProcoreOperation.UPDATE,
        procore_id=created["id"],
        published_updated_at=published_at,
        published_payload={"date": DAY.isoformat(), "num_workers": 3, "num_hours": "8.00", "notes": "x"},
        payload={"date": DAY.isoformat(), "num_workers": 4, "num_hours": "8.00", "notes": "x"},
    )
    await p.take(r)
    result = await p.work(r)
    assert result.outcome is PublishOutcome.CONFLICT
    assert p.procore.records[created["id"]]["num_workers"] == 9


async def test_a_force_publish_overwrites_the_edit() -> None:
    p = Publisher()
    created = await p.procore.create({"date": DAY.isoformat(), "num_workers": 3, "num_hours": "8.00", "notes": "x"})
    await p.procore.update(created["id"], {"num_workers": 9})
    r = request(
        operation=ProcoreOperation.UPDATE,
        procore_id=created["id"],
        force=True,
        payload={"date": DAY.isoformat(), "num_workers": 4, "num_hours": "8.00", "notes": "x"},
    )
    await p.take(r)
    result = await p.work(r)
    assert result.outcome is PublishOutcome.PUBLISHED
    assert p.procore.records[created["id"]]["num_workers"] == 4


async def test_deleting_a_record_already_gone_ends_deleted() -> None:
    p = Publisher()
    r = request(operation=ProcoreOperation.DELETE, procore_id=4242)
    await p.take(r)
    result = await p.work(r)
    assert result.outcome is PublishOutcome.DELETED


async def test_a_completed_day_fails_the_entry_with_what_to_do() -> None:
    p = Publisher()
    p.procore.refuse = [ProcoreError(422, "The daily log for this date is complete and cannot be edited")]
    r = request()
    await p.take(r)
    result = await p.work(r)
    assert result.outcome is PublishOutcome.FAILED
    assert result.message is not None
    assert "completed" in result.message
    assert "reopen" in result.message
    assert p.procore.records == {}


async def test_procore_unavailable_keeps_the_request_pending_for_its_worker_to_try_again() -> None:
    p = Publisher()
    p.procore.refuse = [ProcoreError(503, "Service Unavailable")]
    r = request()
    await p.take(r)
    with pytest.raises(ProcoreError):
        await p.work(r)
    assert p.attempts.rows[r.request_id].state == "pending"
    assert (await p.work(r)).outcome is PublishOutcome.PUBLISHED  # the next round
    assert len(p.procore.records) == 1


async def test_a_500_on_every_round_fails_the_entry_after_max_tries_with_procores_words() -> None:
    p = Publisher()
    p.procore.refuse = [ProcoreError(500, "Internal Server Error") for _ in range(3)]
    r = request()
    await p.take(r)
    for _ in range(2):
        with pytest.raises(ProcoreError):
            await p.work(r, max_tries=3)
    result = await p.work(r, max_tries=3)
    assert result.outcome is PublishOutcome.FAILED
    assert result.message == "Internal Server Error"
    assert p.attempts.finished[-1][1] is True  # uncertain: the next create of the entry looks before posting


async def test_an_entry_procore_cannot_take_fails_before_any_call() -> None:
    p = Publisher()
    r = request(payload={"date": DAY.isoformat(), "num_workers": 2.5, "num_hours": "8", "notes": "x"})
    await p.take(r)
    result = await p.work(r)
    assert result.outcome is PublishOutcome.FAILED
    assert "whole, non-negative number of workers" in (result.message or "")
    assert p.procore.posts == 0


async def test_a_lost_lease_stops_the_round_and_stores_nothing() -> None:
    p = Publisher()
    r = request()
    await p.take(r)
    p.lease.lost = True
    with pytest.raises(LeaseLost):
        await p.work(r)
    assert p.attempts.rows[r.request_id].state == "pending"
    assert p.procore.posts == 0


def timecard(origin_id: int) -> PublishToProcore:
    return request(
        module=Module.TIMECARD,
        payload={"date": DAY.isoformat(), "hours": "8", "party_id": 5, "origin_id": origin_id, "description": "x"},
    )


async def test_a_run_of_timecard_creates_goes_in_one_bulk_call_and_each_request_gets_its_own_record() -> None:
    p = Publisher(procore=FakeProcore(resource=RESOURCES[Module.TIMECARD]))
    run = [timecard(origin_id) for origin_id in (1, 2, 3)]
    await p.take(*run)
    pending = [Pending(r, "pending", 0, {}) for r in run]
    results = await handlers.process_bulk(pending, p.lease, p.attempts, lambda _r, _l: p.procore)
    assert p.procore.bulk_calls == 1
    assert sorted(r.outcome for r in results) == [PublishOutcome.PUBLISHED] * 3
    by_origin = {str(rec["origin_id"]): rec["id"] for rec in p.procore.records.values()}  # sent as strings
    expected = {q.request_id: by_origin[str(q.payload["origin_id"])] for q in run}
    assert {r.request_id: r.procore_id for r in results} == expected
