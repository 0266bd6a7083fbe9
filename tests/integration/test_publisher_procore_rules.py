"""The publisher against Procore's stricter rules (sandbox `rules.py`, each switched on here), over real HTTP with a
real broker and PostgreSQL: start/stop projects, completed days, the project directory, one-second `updated_at`,
the answers Procore may give for a deleted record, and rate limits counted per token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from sandbox.procore import SandboxState
from services.publisher.domain import DELETED_IN_PROCORE, DURATIONS_ONLY
from shared.events import Module, ProcoreOperation, PublishOutcome, TimecardClock
from tests.sandbox_fixtures import run_sandbox
from tests.support.publisher import (
    DAY,
    Company,
    Sandbox,
    request_for,
    wired_publisher,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration
NOON = datetime(DAY.year, DAY.month, DAY.day, 12, 0, 0, tzinfo=UTC)


class FrozenClock:
    """The sandbox's clock: real time, or held at one instant (every write within the same second)."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self.frozen or datetime.now(UTC)


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(scope="module")
def sandbox_url(clock: FrozenClock) -> Iterator[str]:
    with run_sandbox(SandboxState(clock=clock)) as url:
        yield url


@pytest.fixture
async def sandbox(sandbox: Sandbox, clock: FrozenClock) -> AsyncIterator[Sandbox]:
    """The shared one (checked and reset afterwards), its clock running again afterwards."""
    try:
        yield sandbox
    finally:
        clock.frozen = None


async def rules(sandbox: Sandbox, scope: str | None, **values: Any) -> None:
    path = f"/_sandbox/rules/{scope}" if scope else "/_sandbox/rules"
    (await sandbox.http.put(path, json=values)).raise_for_status()


async def posts(sandbox: Sandbox, company: Company) -> list[dict[str, Any]]:
    return [e for e in await sandbox.requests(company.id) if e["method"] == "POST" and e["path"].startswith("/rest/")]


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=UTC)


# --------------------------------------------------------------------- 1. time-entry mode


async def test_start_stop_project_gets_the_timelogs_clock_times_and_durations_only_fail(
    cfg: StackConfig, sandbox: Sandbox
) -> None:
    company = await sandbox.company()
    await rules(sandbox, f"projects/{company.project}", time_entry_mode="start_stop")
    timed = request_for(Module.TIMECARD, company).model_copy(
        update={"clock": TimecardClock(first_in=at(7), last_out=at(16), lunch_minutes=90)}
    )
    second = request_for(Module.TIMECARD, company).model_copy(
        update={"clock": TimecardClock(first_in=at(6, 30), last_out=at(14))}
    )
    durations = request_for(Module.TIMECARD, company).model_copy(update={"clock": TimecardClock(durations_only=True)})
    async with wired_publisher(cfg) as (requests, results):
        await requests.send(timed)
        first = await results.wait(timed.request_id)
        await requests.send(second, durations)
        later = await results.wait(second.request_id)
        failed = await results.wait(durations.request_id)

    assert first.outcome is PublishOutcome.PUBLISHED, first.message
    assert later.outcome is PublishOutcome.PUBLISHED, first.message
    assert failed.outcome is PublishOutcome.FAILED
    assert failed.message == DURATIONS_ONLY
    by_id = {r["id"]: r for r in await sandbox.records(Module.TIMECARD, company)}
    assert set(by_id) == {first.procore_id, later.procore_id}
    record = by_id[first.procore_id]
    assert (record["time_in"], record["time_out"], record["lunch_time"]) == (
        "2026-11-20T07:00:00.000000Z",
        "2026-11-20T16:00:00.000000Z",
        "90",
    )
    assert record["hours"] == "7.5"
    # hours-only was refused once; after that the project is known to take start/stop times
    sent = await posts(sandbox, company)
    items = [item for e in sent for item in e["body"].get("timecard_entries") or [e["body"]["timecard_entry"]]]
    # hours-only was refused once; after that the project is known to take start/stop times (the later two go as
    # one run: the durations-only one fails before any call, so the bulk_create call carries one item)
    assert [("time_in" in item) for item in items] == [False, True, True]
    assert [e["status"] for e in sent] == [422, 201, 201]


# --------------------------------------------------------------------- 3. completed day


async def test_a_completed_day_fails_the_entry_with_what_to_do_and_is_not_retried(
    cfg: StackConfig, sandbox: Sandbox
) -> None:
    company = await sandbox.company()
    await rules(sandbox, f"projects/{company.project}", completed_days=[DAY.isoformat()])
    request = request_for(Module.MANPOWER, company)
    async with wired_publisher(cfg) as (requests, results):
        await requests.send(request)
        result = await results.wait(request.request_id)
        await results.settle(1.0)
    assert result.outcome is PublishOutcome.FAILED
    assert result.message == (
        f"Procore's daily log for {DAY.isoformat()} is completed — reopen it in Procore, then republish"
    )
    assert len(await posts(sandbox, company)) == 1  # refused once, not retried
    assert await sandbox.records(Module.MANPOWER, company) == []


# --------------------------------------------------------------------- 4. project directory


async def test_a_person_outside_the_project_directory_fails_naming_them_and_the_project(
    cfg: StackConfig, sandbox: Sandbox
) -> None:
    company = await sandbox.company()
    await rules(sandbox, f"projects/{company.project}", directory=[])
    request = request_for(Module.TIMECARD, company).model_copy(
        update={"person_name": "Ada Lovelace", "project_name": "Tower A"}
    )
    async with wired_publisher(cfg) as (requests, results):
        await requests.send(request)
        result = await results.wait(request.request_id)
    assert result.outcome is PublishOutcome.FAILED
    assert result.message == (
        "Ada Lovelace is not in the directory of Procore project Tower A — add them to the project's directory in"
        " Procore, then republish"
    )
    assert await sandbox.records(Module.TIMECARD, company) == []


# --------------------------------------------------------------------- 5. one-second updated_at


async def test_an_edit_within_the_same_second_is_still_a_conflict(
    cfg: StackConfig, sandbox: Sandbox, clock: FrozenClock
) -> None:
    company = await sandbox.company()
    await rules(sandbox, f"companies/{company.id}", timestamp_precision="second")
    clock.frozen = NOON  # our write and the person's edit land in the same second
    create = request_for(Module.TIMECARD, company)
    async with wired_publisher(cfg) as (requests, results):
        await requests.send(create)
        created = await results.wait(create.request_id)
        assert created.outcome is PublishOutcome.PUBLISHED, created.message
        edited = await sandbox.edit(Module.TIMECARD, created.procore_id or 0, {"hours": "3"})
        assert datetime.fromisoformat(edited["updated_at"]) == created.procore_updated_at  # looks untouched
        update = request_for(
            Module.TIMECARD,
            company,
            ProcoreOperation.UPDATE,
            after=created,
            payload=(created.published_payload or {}) | {"hours": "9.00"},
        )
        await requests.send(update)
        result = await results.wait(update.request_id)
    assert result.outcome is PublishOutcome.CONFLICT, result.message
    (record,) = await sandbox.records(Module.TIMECARD, company)
    assert record["hours"] == "3.0"  # the person's edit stands


# --------------------------------------------------------------------- 6. deleted records


@pytest.mark.parametrize("answer", ["404", "403", "deleted_at"])
async def test_each_answer_for_a_deleted_record_means_gone(cfg: StackConfig, sandbox: Sandbox, answer: str) -> None:
    company = await sandbox.company()
    await rules(sandbox, f"companies/{company.id}", deleted_answer=answer)
    first, second = request_for(Module.MANPOWER, company), request_for(Module.TIMECARD, company)
    async with wired_publisher(cfg) as (requests, results):
        await requests.send(first, second)
        published = [await results.wait(first.request_id), await results.wait(second.request_id)]
        await sandbox.delete(Module.MANPOWER, published[0].procore_id or 0)
        await sandbox.delete(Module.TIMECARD, published[1].procore_id or 0)
        update = request_for(Module.MANPOWER, company, ProcoreOperation.UPDATE, after=published[0])
        delete = request_for(Module.TIMECARD, company, ProcoreOperation.DELETE, after=published[1])
        await requests.send(update, delete)
        updated, deleted = await results.wait(update.request_id), await results.wait(delete.request_id)
    assert (updated.outcome, updated.message) == (PublishOutcome.CONFLICT, DELETED_IN_PROCORE)
    assert deleted.outcome is PublishOutcome.DELETED, deleted.message
    assert await sandbox.records(Module.MANPOWER, company) == []


# --------------------------------------------------------------------- 9. rate limits per token


async def test_companies_under_one_token_share_its_budget(cfg: StackConfig, sandbox: Sandbox) -> None:
    """Procore counts per token: the publisher paces every company reached with the app's one token together."""
    await rules(sandbox, None, rate_limit_scope="token")
    await sandbox.settings(rate_limit_spike=6, rate_limit_hourly=1000, rate_limit_time_scale=0.3)  # 6 per 3 s
    companies = [await sandbox.company(f"Co{i}") for i in range(3)]
    batch = [request_for(Module.PRODUCTION_QUANTITY, c) for c in companies for _ in range(5)]
    async with wired_publisher(cfg) as (requests, results):
        await requests.send(*batch)
        for r in batch:
            assert (await results.wait(r.request_id, timeout_s=60)).outcome is PublishOutcome.PUBLISHED
    log = [e for e in await sandbox.requests() if e["path"].startswith("/rest/") and e["seq"] > sandbox.start_seq]
    rejected = [e for e in log if e["status"] == 429]
    assert len(rejected) <= 1, rejected  # one probe may learn the window; then the shared budget paces every call
    for c in companies:
        assert len(await sandbox.records(Module.PRODUCTION_QUANTITY, c)) == 5
