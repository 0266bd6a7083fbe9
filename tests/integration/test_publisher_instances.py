"""Two publisher instances in one consumer group (in this process), the sandbox over real HTTP.

They split the companies between them, and together make exactly one Procore record per request;
a request delivered to both makes one record; Procore's per-company rate budgets hold across
instances, including when a company moves from one instance to the other mid-backlog. Both use
the same OAuth app (so they share Procore's budget, as in production); the sandbox's request log
tells who called by the User-Agent, which names the instance.
"""

from __future__ import annotations

import itertools
import json
import time

import httpx
import pytest

from shared.events import Module, PublishOutcome
from tests.support.publisher import (
    Instance,
    Requests,
    Results,
    Sandbox,
    answered_once_each,
    caller,
    request_for,
    rest_calls,
    rows,
    running_publisher,
    two_publishers,
    until_live,
    wait_until,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration
MODULES = [Module.MANPOWER, Module.TIMECARD, Module.PRODUCTION_QUANTITY]


async def test_two_instances_share_companies_and_make_one_record_per_request(
    cfg: StackConfig, sandbox: Sandbox
) -> None:
    companies = [await sandbox.company(f"Co{i}") for i in range(6)]
    batch = [request_for(m, c) for c in companies for m in MODULES for _ in range(2)]
    async with two_publishers(cfg) as (requests, results):
        await requests.send(*batch)
        await answered_once_each(results, batch)

    log = await rest_calls(sandbox)
    assert {caller(e) for e in log} == {"a", "b"}  # both worked
    for c in companies:  # one instance at a time per company: a call by one never overlaps a call by the other
        calls = sorted((e for e in log if e["company_id"] == c.id), key=lambda e: e["timestamp"])
        for before, after in itertools.pairwise(calls):
            if caller(before) != caller(after):
                assert after["timestamp"] >= before["timestamp"] + before["duration_ms"] / 1000 - 0.001
    for c in companies:
        records = [r for m in MODULES for r in await sandbox.records(m, c)]
        markers = {r.get("notes") or r.get("description") for r in records}
        assert len(records) == len(markers) == 2 * len(MODULES)  # one record per request, none twice
    # and one POST each (a bulk_create POST carries several timecards: each counts)
    assert sum(len(e["body"].get("timecard_entries", [None])) for e in log if e["method"] == "POST") == len(batch)


async def test_a_request_delivered_to_both_instances_makes_one_record(cfg: StackConfig, sandbox: Sandbox) -> None:
    company = await sandbox.company()
    request = request_for(Module.TIMECARD, company)
    async with two_publishers(cfg) as (requests, results):
        copies = await requests.send_everywhere(request)  # every partition: both instances get it, at once
        first = await results.wait(request.request_id)
        await results.settle(1.0)
        answers = len(results.by_request[request.request_id])
        await requests.send(request)  # the aggregator's outbox relays it once more, later
        await results.wait(request.request_id, count=answers + 1)
    assert copies >= 2
    assert first.outcome is PublishOutcome.PUBLISHED
    assert {(r.outcome, r.procore_id) for r in results.by_request[request.request_id]} == {
        (PublishOutcome.PUBLISHED, first.procore_id)
    }
    (record,) = await sandbox.records(Module.TIMECARD, company)
    assert record["id"] == first.procore_id
    posts = [e for e in await sandbox.requests(company.id) if e["method"] == "POST"]
    assert len(posts) == 1  # one effect in Procore


async def test_rate_budgets_hold_across_two_instances_in_steady_state(cfg: StackConfig, sandbox: Sandbox) -> None:
    """Tiny limits (4 calls per 2 s per company), a backlog worked by two instances, one of them stopping
    mid-way (its companies go to the other with their budgets): never a 429."""
    companies = [await sandbox.company(f"Tight{i}") for i in range(4)]
    await sandbox.settings(rate_limit_spike=4, rate_limit_hourly=100_000, rate_limit_time_scale=0.2)
    batch = [request_for(MODULES[n % 3], c) for n in range(10) for c in companies]
    async with (
        running_publisher(cfg, publisher_instance_id="b"),
        Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
        Results(cfg.kafka, cfg.topics.publish_results) as results,
    ):
        async with running_publisher(cfg, publisher_instance_id="a"):
            await until_live(cfg, 2)
            await requests.send(*batch)
            while len(results.by_request) < len(batch) // 3:
                await results.settle(0.2)
        await answered_once_each(results, batch, timeout_s=90)

    log = await rest_calls(sandbox)
    assert [e for e in log if e["status"] == 429] == []
    assert {caller(e) for e in log} == {"a", "b"}
    for c in companies:
        assert sum([len(await sandbox.records(m, c)) for m in MODULES]) == 10
    leases = await rows(cfg.dsn, f'SELECT owner, budget FROM "{cfg.schemas["publisher"]}".company_leases')
    assert len(leases) == len(companies)
    assert all(r["owner"] is None and r["budget"] for r in leases)


async def test_a_new_owner_keeps_to_the_budget_the_old_one_was_waiting_on(cfg: StackConfig, sandbox: Sandbox) -> None:
    """Another app spent the company's budget: the owner's probe gets a 429 and waits for the reset. It stops; the
    instance taking over continues from the saved budget — it waits too, rather than calling into a second 429."""
    company = await sandbox.company()
    schema = cfg.schemas["publisher"]
    await sandbox.settings(rate_limit_spike=3, rate_limit_hourly=100_000, rate_limit_time_scale=1.0)  # 3 per 10 s
    batch = [request_for(Module.MANPOWER, company) for _ in range(2)]
    async with (
        httpx.AsyncClient(base_url=sandbox.url) as other,
        Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
        Results(cfg.kafka, cfg.topics.publish_results) as results,
        Instance(cfg, publisher_instance_id="a") as a,
        Instance(cfg, publisher_instance_id="b") as b,
    ):
        instances = {"a": a, "b": b}
        await until_live(cfg, 2)
        grant = {"grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret"}
        token = (await other.post("/oauth/token", json=grant)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Procore-Company-Id": str(company.id)}
        reset = 0.0
        while not reset:
            r = await other.get(f"/rest/v1.0/projects/{company.project}/manpower_logs", headers=headers)
            if r.headers.get("x-rate-limit-remaining") == "0":
                reset = float(r.headers["x-rate-limit-reset"])
        await requests.send(*batch)

        async def probe() -> dict[str, object] | None:
            return next((e for e in await rest_calls(sandbox) if e["status"] == 429), None)

        rejected = await wait_until(probe, timeout_s=20)
        owner = caller(rejected)
        assert owner in instances

        async def block_saved_with_the_lease() -> bool:
            (lease,) = await rows(cfg.dsn, f'SELECT budget FROM "{schema}".company_leases')
            budget = json.loads(lease["budget"] or "{}")
            return float(budget.get("blocked_until") or 0) > time.time()

        await wait_until(block_saved_with_the_lease, timeout_s=10)  # the owner learnt it, and renewed since
        await instances[owner].stop()  # the owner stops; its lease and budget go to the other
        handed_over = time.time()
        await answered_once_each(results, batch, timeout_s=40)

    assert handed_over < reset - 2, "the window reset too soon for the test to mean anything"
    log = await rest_calls(sandbox)
    story = [(e["seq"], caller(e), e["method"], e["status"], round(e["timestamp"] - reset, 3)) for e in log]
    successor = [e for e in log if caller(e) not in (owner, None)]
    assert successor, story
    assert [e for e in successor if e["status"] == 429] == [], story
    assert min(e["timestamp"] for e in successor) >= reset - 1  # the reset header is rounded up to whole seconds
    assert [e for e in log if e["status"] == 429] == [rejected]  # the first owner's probe, and no other
    assert len(await sandbox.records(Module.MANPOWER, company)) == len(batch)
