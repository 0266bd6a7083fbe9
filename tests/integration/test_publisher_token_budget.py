"""Two publisher instances, several companies under ONE token (the app's service account), the sandbox counting calls
per token (Procore's rule): together the instances keep to the token's budget.

Each instance leases its share of the companies, so both call Procore with the same token at once. The answers'
`X-Rate-Limit-*` headers count the token's calls by both, so each instance's own pacing already converges; what it
cannot know is the other's calls on the wire and a 429's `Retry-After` the other got. The token's budget kept in
PostgreSQL (`adapters/token_budgets.py`) gives both the same view: no 429 in steady state, nobody calls with the
token while it is blocked, every entry published exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.events import Module, PublishOutcome
from tests.support.publisher import (
    Sandbox,
    answered_once_each,
    caller,
    request_for,
    rest_calls,
    rows,
    two_publishers,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration
MODULES = [Module.MANPOWER, Module.PRODUCTION_QUANTITY, Module.TIMECARD]


@pytest.fixture
async def sandbox(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    """The shared one, its rate limits counted per company again afterwards (before it is checked and reset)."""
    yield sandbox
    (await sandbox.http.put("/_sandbox/rules", json={"rate_limit_scope": "company"})).raise_for_status()


async def test_two_instances_keep_to_one_tokens_budget(cfg: StackConfig, sandbox: Sandbox) -> None:
    companies = [await sandbox.company(f"OneToken{i}") for i in range(4)]
    (await sandbox.http.put("/_sandbox/rules", json={"rate_limit_scope": "token"})).raise_for_status()
    # 4 calls per 2 s for the one token, whichever company and instance makes them
    await sandbox.settings(rate_limit_spike=4, rate_limit_hourly=100_000, rate_limit_time_scale=0.2)
    # slow answers: each instance's numbers miss the other's calls on the wire (as with Procore, over the Internet)
    await sandbox.fault(path="/rest/*", kind="latency", latency_ms=200, times=None)
    batch = [request_for(MODULES[n % 2], c) for n in range(6) for c in companies]
    async with two_publishers(cfg, procore_rate_limit_scope="token") as (requests, results):
        await requests.send(*batch)
        await answered_once_each(results, batch, timeout_s=120)

    log = await rest_calls(sandbox)
    assert [e for e in log if e["status"] == 429] == []  # the token's budget was never exceeded
    assert {caller(e) for e in log} == {"a", "b"}  # both instances spent the one token's budget
    for c in companies:  # exactly once: one record per request
        records = [r for m in MODULES for r in await sandbox.records(m, c)]
        markers = {r.get("notes") or r.get("description") for r in records}
        assert len(records) == len(markers) == 6
    shared = await rows(cfg.dsn, f'SELECT budget_key FROM "{cfg.schemas["publisher"]}".token_budgets')
    assert [r["budget_key"] for r in shared] == ["app"]


async def test_a_429_to_one_instance_stops_both(cfg: StackConfig, sandbox: Sandbox) -> None:
    """Procore answers 429 for the token: no call with it by either instance before its Retry-After."""
    companies = [await sandbox.company(f"Blocked{i}") for i in range(4)]
    (await sandbox.http.put("/_sandbox/rules", json={"rate_limit_scope": "token"})).raise_for_status()
    batch = [request_for(Module.MANPOWER, c) for _ in range(8) for c in companies]
    async with two_publishers(cfg, procore_rate_limit_scope="token") as (requests, results):
        await requests.send(*batch[:8])
        for request in batch[:8]:  # both at work, each with its own view of the token's numbers
            await results.wait(request.request_id, timeout_s=60)
        await sandbox.fault(path="/rest/*", method="POST", kind="status", status=429, times=1, retry_after=2)
        await requests.send(*batch[8:])
        for request in batch:
            result = await results.wait(request.request_id, timeout_s=60)
            assert result.outcome is PublishOutcome.PUBLISHED, result.message

    log = sorted(await rest_calls(sandbox), key=lambda e: e["timestamp"])
    (blocked,) = [e for e in log if e["status"] == 429]
    answered = blocked["timestamp"] + blocked["duration_ms"] / 1000
    # a call the other instance started as the 429 was being answered may still go; none after that until the reset
    during = [e for e in log if answered + 0.1 <= e["timestamp"] < answered + 2 - 0.05]
    assert during == []
    assert {caller(e) for e in log} == {"a", "b"}
    for c in companies:
        assert len(await sandbox.records(Module.MANPOWER, c)) == 8
