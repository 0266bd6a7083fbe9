"""New timecards go to Procore 25 per call (v1.1 `bulk_create`), with the guarantees of one by one: one record per
entry after lost answers, per-item Failed reasons, a company without bulk access published one by one (real broker,
PostgreSQL and sandbox over HTTP; every request checked against the OpenAPI subset)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from services.publisher.bootstrap import build_app
from services.publisher.config import PublisherSettings
from shared.broker import ensure_topics
from shared.events import Module, PublishOutcome, PublishToProcore, TimecardClock
from tests.support.publisher import Company, Requests, Results, Sandbox, payload_for, request_for
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration
BULK = "/bulk_create"


@asynccontextmanager
async def backlog(cfg: StackConfig, *requests: PublishToProcore) -> AsyncIterator[Results]:
    """The requests wait on the topic; then the publisher starts and finds them all (a backlog)."""
    await ensure_topics(cfg.kafka, cfg.topics.all())
    async with Requests(cfg.kafka, cfg.topics.publish_requests) as producer:
        await producer.send(*requests)
    app = build_app(PublisherSettings(**(cfg.common("publisher") | cfg.procore())))
    async with Results(cfg.kafka, cfg.topics.publish_results) as results, app.start_lifespan_context():
        yield results


async def rules(sandbox: Sandbox, scope: str, **values: Any) -> None:
    (await sandbox.http.put(f"/_sandbox/rules/{scope}", json=values)).raise_for_status()


async def calls(sandbox: Sandbox, company: Company) -> list[dict[str, Any]]:
    return [e for e in await sandbox.requests(company.id) if e["path"].startswith("/rest/")]


def timecards(company: Company, n: int, **overrides: Any) -> list[PublishToProcore]:
    out = []
    for _ in range(n):
        request = request_for(Module.TIMECARD, company)
        out.append(
            request.model_copy(
                update={
                    "payload": payload_for(Module.TIMECARD, company, request.marker)
                    | {"origin_id": request.payload["origin_id"], **overrides}
                }
            )
        )
    return out


async def test_a_backlog_goes_25_per_call_one_record_per_entry(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    requests = timecards(company, 60)
    async with backlog(cfg, *requests) as results:
        done = [await results.wait(r.request_id, timeout_s=60) for r in requests]
        await results.settle(1.0)
        assert all(len(results.by_request[r.request_id]) == 1 for r in requests)
    assert {d.outcome for d in done} == {PublishOutcome.PUBLISHED}
    records = await sandbox.records(Module.TIMECARD, company)
    assert sorted(r["id"] for r in records) == sorted(d.procore_id or 0 for d in done)  # one each, each its own
    by_origin = {str(r["origin_id"]): r for r in records}
    for request, result in zip(requests, done, strict=True):
        assert by_origin[str(request.payload["origin_id"])]["id"] == result.procore_id
    log = await calls(sandbox, company)
    assert [e["method"] for e in log] == ["POST"] * 3
    assert all(e["path"].endswith(BULK) for e in log)
    assert [len(e["body"]["timecard_entries"]) for e in log] == [25, 25, 10]


async def test_items_procore_refuses_fail_on_their_own_with_its_reason(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    good = timecards(company, 3)
    bad = timecards(company, 2, timecard_time_type_id=7)
    requests = [good[0], bad[0], good[1], bad[1], good[2]]
    async with backlog(cfg, *requests) as results:
        done = {r.request_id: await results.wait(r.request_id, timeout_s=60) for r in requests}
    for r in good:
        assert done[r.request_id].outcome is PublishOutcome.PUBLISHED
    for r in bad:
        assert done[r.request_id].outcome is PublishOutcome.FAILED
        assert "7 is not a timecard time type" in (done[r.request_id].message or "")
    assert len(await sandbox.records(Module.TIMECARD, company)) == 3
    log = await calls(sandbox, company)
    assert sum(e["path"].endswith(BULK) for e in log) == 1  # the refused ones were tried once more, each alone


@pytest.mark.parametrize("after_commit", ["drop", "status"])
async def test_a_lost_answer_is_looked_for_never_sent_twice(
    cfg: StackConfig, sandbox: Sandbox, after_commit: str
) -> None:
    company = await sandbox.company()
    await sandbox.fault(path=f"*{BULK}", method="POST", kind="fail_after_commit", after_commit=after_commit, status=502)
    requests = timecards(company, 12)
    async with backlog(cfg, *requests) as results:
        done = [await results.wait(r.request_id, timeout_s=60) for r in requests]
    assert {d.outcome for d in done} == {PublishOutcome.PUBLISHED}
    records = await sandbox.records(Module.TIMECARD, company)
    assert sorted(r["id"] for r in records) == sorted(d.procore_id or 0 for d in done)
    assert len(records) == 12
    assert sum(e["path"].endswith(BULK) for e in await calls(sandbox, company)) == 1


async def test_a_company_without_bulk_access_is_published_one_by_one(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    await rules(sandbox, f"companies/{company.id}", bulk_create_forbidden=True)
    requests = timecards(company, 30)
    async with backlog(cfg, *requests) as results:
        done = [await results.wait(r.request_id, timeout_s=60) for r in requests]
    assert {d.outcome for d in done} == {PublishOutcome.PUBLISHED}
    assert len(await sandbox.records(Module.TIMECARD, company)) == 30
    log = await calls(sandbox, company)
    assert sum(e["path"].endswith(BULK) for e in log) == 1  # refused once, remembered
    assert sum(e["method"] == "POST" and not e["path"].endswith(BULK) for e in log) == 30


async def test_bulk_into_a_start_stop_project_sends_clock_times(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    await rules(sandbox, f"projects/{company.project}", time_entry_mode="start_stop")
    requests = [
        r.model_copy(update={"clock": TimecardClock(first_in="2026-11-20T07:00:00Z", last_out="2026-11-20T15:00:00Z")})
        for r in timecards(company, 30)
    ]
    async with backlog(cfg, *requests) as results:
        done = [await results.wait(r.request_id, timeout_s=60) for r in requests]
    assert {d.outcome for d in done} == {PublishOutcome.PUBLISHED}, {d.message for d in done}
    records = await sandbox.records(Module.TIMECARD, company)
    assert len(records) == 30
    assert {r["time_in"] for r in records} == {"2026-11-20T07:00:00.000000Z"}
    # the first run was refused item by item (hours only): learnt from it, each went again once, with times
    log = await calls(sandbox, company)
    assert [(e["path"].endswith(BULK), e["status"]) for e in log] == [(True, 422)] + [(False, 201)] * 25 + [(True, 201)]
