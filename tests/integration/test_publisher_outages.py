"""Unavailable is not invalid: while Procore, the mapping service's token endpoint or the database is away, publish
requests stay pending (their entries stay Publishing), the publisher reports not-ready, and once the dependency is
back every request ends Published — never Failed for the outage, never a second record.

Real broker, real PostgreSQL, the sandbox (and the mapping service) over real HTTP; `TcpProxy` cuts a dependency
the way a network partition or a stopped server does.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.events import Module, PublishOutcome, PublishToProcore
from tests.support.database import role_dsn
from tests.support.mapping import INTERNAL_TOKEN, connect_service_account, mapping_settings, serve_mapping
from tests.support.proxy import TcpProxy
from tests.support.publisher import (
    Requests,
    Results,
    Sandbox,
    health,
    request_for,
    rows,
    running_publisher,
    wait_until,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration
MODULES = [Module.MANPOWER, Module.TIMECARD, Module.PRODUCTION_QUANTITY]


def proxy_for(url: str) -> TcpProxy:
    parts = urlsplit(url)
    return TcpProxy(parts.hostname or "127.0.0.1", parts.port or 80)


async def not_ready(app: Any, failing: str) -> bool:
    status, body = await health(app)
    return status == 503 and body[failing] is False


async def states(cfg: StackConfig) -> list[str]:
    found = await rows(cfg.dsn, f'SELECT state FROM "{cfg.schemas["publisher"]}".attempts ORDER BY seq')
    return [r["state"] for r in found]


async def all_published(results: Results, batch: list[PublishToProcore], timeout_s: float = 40) -> None:
    for request in batch:
        result = await results.wait(request.request_id, timeout_s=timeout_s)
        assert result.outcome is PublishOutcome.PUBLISHED, result.message


async def test_procore_unreachable_then_failing_leaves_requests_pending_until_it_is_back(
    cfg: StackConfig, sandbox: Sandbox
) -> None:
    company = await sandbox.company()
    batch = [request_for(m, company) for m in MODULES]
    async with proxy_for(sandbox.url) as proxy:
        await proxy.cut()
        through = f"http://127.0.0.1:{proxy.port}"
        async with (
            running_publisher(cfg, procore_base_url=through, procore_timeout_s=1.0) as app,
            Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
            Results(cfg.kafka, cfg.topics.publish_results) as results,
        ):
            await requests.send(*batch)
            await wait_until(lambda: not_ready(app, "publishing"), timeout_s=60)
            await results.settle(2.0)
            assert results.by_request == {}  # no result: not Failed, still Publishing
            assert set(await states(cfg)) <= {"queued", "started"}

            # Procore is reachable again but answers 503 (and times out) for a while: still nothing failed.
            await sandbox.fault(path="/rest/*", kind="status", status=503, retry_after=1, times=None)
            await sandbox.fault(path="/rest/*", kind="timeout", timeout_s=2.0, times=2)
            await proxy.restore()
            await results.settle(4.0)
            assert results.by_request == {}
            assert [e for e in await sandbox.requests(company.id) if e["status"] == 503]  # it did try

            await sandbox.clear_faults()
            await all_published(results, batch)

            async def ready() -> bool:
                return (await health(app))[0] == 200

            await wait_until(ready, timeout_s=60)
    for m in MODULES:
        assert len(await sandbox.records(m, company)) == 1
    assert set(await states(cfg)) == {"done"}


async def test_token_endpoint_unreachable_leaves_requests_pending_until_it_is_back(
    cfg: StackConfig, sandbox: Sandbox
) -> None:
    company = await sandbox.company()
    account = f"acc-{uuid.uuid4().hex[:8]}"
    batch = [request_for(m, company, account_id=account) for m in MODULES]
    async with serve_mapping(mapping_settings(cfg)) as mapping_url, proxy_for(mapping_url) as proxy:
        # Connected by proof: the customer's own service account for this company (binds it to the account).
        connected = await connect_service_account(cfg, mapping_url, account, company.id)
        assert connected["status"] == "done", connected

        await proxy.cut()
        async with (
            running_publisher(
                cfg, procore_tokens_url=f"http://127.0.0.1:{proxy.port}", internal_api_token=INTERNAL_TOKEN
            ) as app,
            Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
            Results(cfg.kafka, cfg.topics.publish_results) as results,
        ):
            await requests.send(*batch)
            await wait_until(lambda: not_ready(app, "publishing"), timeout_s=60)
            await results.settle(3.0)
            assert results.by_request == {}
            assert [e for e in await sandbox.requests(company.id) if e["path"].startswith("/rest/")] == []

            await proxy.restore()
            await all_published(results, batch)
    for m in MODULES:
        assert len(await sandbox.records(m, company)) == 1


async def test_database_outage_pauses_the_workers_and_loses_nothing(cfg: StackConfig, sandbox: Sandbox) -> None:
    """PostgreSQL goes away mid-backlog for longer than a lease lasts; the request in flight is reconciled on resume."""
    company = await sandbox.company()
    await sandbox.settings(rate_limit_spike=3, rate_limit_hourly=100_000, rate_limit_time_scale=0.1)  # 3 per second
    batch = [request_for(Module.MANPOWER, company) for _ in range(12)]
    proxy, through = TcpProxy.for_dsn(cfg.dsn)
    async with (
        proxy,
        running_publisher(cfg, database_url=role_dsn(through, cfg.schemas["publisher"])) as app,
        Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
        Results(cfg.kafka, cfg.topics.publish_results) as results,
    ):
        await requests.send(*batch)

        async def under_way() -> bool:
            stored = await states(cfg)
            return len(stored) == len(batch) and len(await sandbox.records(Module.MANPOWER, company)) >= 3

        await wait_until(under_way, timeout_s=30)
        await proxy.cut()
        before = len(await sandbox.records(Module.MANPOWER, company))
        await wait_until(lambda: not_ready(app, "database"), timeout_s=60)
        await results.settle(4.0)  # longer than the lease lasts
        during = len(await sandbox.records(Module.MANPOWER, company)) - before
        assert during <= 1  # at most the request already in flight: no round starts without the database
        await proxy.restore()
        await all_published(results, batch, timeout_s=60)
    records = await sandbox.records(Module.MANPOWER, company)
    assert len(records) == len({r["notes"] for r in records}) == len(batch)
    assert set(await states(cfg)) == {"done"}
