"""Publisher processes killed with SIGKILL: another instance continues, nothing is doubled, every request answered.

Real processes (`python -m services.publisher`), real broker, real PostgreSQL, the sandbox over HTTP.
Each instance names itself in its User-Agent, so the sandbox's request log tells who called when.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import asyncpg
import pytest

from shared.broker import ensure_topics
from shared.events import Module, PublishOutcome
from tests.support.publisher import (
    FAST,
    Requests,
    Results,
    caller,
    checked_sandbox,
    live_instances,
    publisher_env,
    request_for,
    rows,
    start_publisher_process,
    stop_process,
    wait_until,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration


@pytest.fixture
async def cfg(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str], sandbox_url: str
) -> StackConfig:
    config = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox_url)
    await ensure_topics(kafka_bootstrap, config.topics.all())
    return config


async def test_sigkill_of_the_instance_holding_a_company_mid_backlog(
    cfg: StackConfig, sandbox_url: str, tmp_path: Path
) -> None:
    schema = cfg.schemas["publisher"]
    async with checked_sandbox(sandbox_url) as sandbox:
        companies = [await sandbox.company(f"Busy{i}") for i in range(2)]
        await sandbox.settings(rate_limit_spike=3, rate_limit_hourly=100_000, rate_limit_time_scale=0.1)  # 3/s
        batch = [request_for(Module.MANPOWER, c) for _ in range(12) for c in companies]
        processes = {name: start_publisher_process(publisher_env(cfg, name), tmp_path / f"{name}.log") for name in "ab"}
        try:
            async with (
                Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
                Results(cfg.kafka, cfg.topics.publish_results) as results,
            ):

                async def both_live() -> bool:
                    return await live_instances(cfg) == 2

                await wait_until(both_live, timeout_s=40)
                await requests.send(*batch)
                target = companies[0]

                async def held_mid_backlog() -> str | None:
                    created = len(await sandbox.records(Module.MANPOWER, target))
                    found = await rows(
                        cfg.dsn, f'SELECT owner FROM "{schema}".company_leases WHERE company_id = $1', target.id
                    )
                    return found[0]["owner"] if created >= 3 and found and found[0]["owner"] else None

                owner = await wait_until(held_mid_backlog, timeout_s=40)
                processes[owner].send_signal(signal.SIGKILL)
                assert processes[owner].wait(timeout=10) == -signal.SIGKILL
                killed_at = time.time()
                left = 12 - len(await sandbox.records(Module.MANPOWER, target))
                assert left > 0, "the backlog was over before the kill: the test proved nothing"

                for request in batch:
                    result = await results.wait(request.request_id, timeout_s=60)
                    assert result.outcome is PublishOutcome.PUBLISHED, result.message
                    answers = {(r.outcome, r.procore_id) for r in results.by_request[request.request_id]}
                    assert answers == {(PublishOutcome.PUBLISHED, result.procore_id)}
        finally:
            for process in processes.values():
                stop_process(process)

        log = [e for e in await sandbox.requests(since=sandbox.start_seq) if e["path"].startswith("/rest/")]
        survivor = next(name for name in processes if name != owner)
        taken_over = [e for e in log if e["company_id"] == target.id and e["timestamp"] > killed_at]
        assert taken_over
        assert {caller(e) for e in taken_over} == {survivor}
        # within seconds: the TTL, the grace for a write that may have been in flight, a renewal tick, some slack
        assert taken_over[0]["timestamp"] - killed_at < FAST["publisher_lease_ttl_s"] + 10
        for c in companies:
            records = await sandbox.records(Module.MANPOWER, c)
            assert len(records) == len({r["notes"] for r in records}) == 12  # one record per request, none twice
        assert [e for e in log if e["status"] == 429] == []


async def test_a_result_stored_before_the_process_died_is_sent_by_the_next_one(
    cfg: StackConfig, sandbox_url: str, tmp_path: Path
) -> None:
    """The result is committed with its outbox row; the process dies before the relay sent it; the next sends it."""
    schema = cfg.schemas["publisher"]
    async with checked_sandbox(sandbox_url) as sandbox:
        company = await sandbox.company()
        request = request_for(Module.PRODUCTION_QUANTITY, company)
        # Hold the outbox relay's lock, so the first process can store results but never send them.
        relay_lock = await asyncpg.connect(cfg.dsn)
        await relay_lock.execute("SELECT pg_advisory_lock(hashtext($1))", f"outbox:{schema}")
        first = start_publisher_process(publisher_env(cfg, "first"), tmp_path / "first.log")
        try:
            async with (
                Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
                Results(cfg.kafka, cfg.topics.publish_results) as results,
            ):
                await requests.send(request)

                async def stored() -> bool:
                    try:
                        waiting = await rows(cfg.dsn, f'SELECT payload FROM "{schema}".outbox')
                    except asyncpg.UndefinedTableError:
                        return False
                    return len(waiting) == 1

                await wait_until(stored, timeout_s=40)
                await results.settle(1.0)
                assert request.request_id not in results.by_request  # stored, not sent
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
                await relay_lock.close()

                second = start_publisher_process(publisher_env(cfg, "second"), tmp_path / "second.log")
                try:
                    result = await results.wait(request.request_id, timeout_s=40)
                    await results.settle(1.0)
                finally:
                    stop_process(second)
        finally:
            stop_process(first)
            if not relay_lock.is_closed():
                await relay_lock.close()

        assert result.outcome is PublishOutcome.PUBLISHED
        assert len(results.by_request[request.request_id]) == 1
        (record,) = await sandbox.records(Module.PRODUCTION_QUANTITY, company)
        assert record["id"] == result.procore_id
        assert await rows(cfg.dsn, f'SELECT id FROM "{schema}".outbox') == []
