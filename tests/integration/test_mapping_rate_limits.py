"""Syncing 10,000 Procore people under tight rate limits: the client waits for the reset, never hits a 429.

The sandbox's limits are scaled down in time (a 10-request spike window of 1 s) and pages are
small, so one sync needs many windows; the sandbox's request log shows what reached it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from shared.broker import ensure_topics
from shared.events import ConfigureSetup, Module, ProcoreEntity, SyncProcoreEntities
from tests.sandbox_fixtures import run_sandbox
from tests.support.kafka import produce
from tests.support.mapping import connect_service_account, fetch, mapping_settings, outcome, serve_mapping
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration

PEOPLE = 10_000
PER_PAGE = 200
SPIKE = 10
TIME_SCALE = 0.1  # the 10 s spike window lasts 1 s, the hour 6 minutes


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


async def test_sync_of_10000_people_respects_the_rate_limit(
    sandbox: str, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=f"{sandbox}/_sandbox", timeout=30) as control:
        company = (await control.post("/companies", json={"name": "Big", "generate": {"people": PEOPLE}})).json()
        company_id = company["company_id"]
        settings = {
            "per_page_max": PER_PAGE,
            "rate_limit_spike": SPIKE,
            "rate_limit_hourly": 1000,
            "rate_limit_time_scale": TIME_SCALE,
        }
        (await control.put("/settings", json=settings)).raise_for_status()
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    account = f"acc-{unique}"
    perms = ["procore.setup", "procore.mapping"]
    setup = ConfigureSetup(
        account_id=account,
        procore_company_id=company_id,
        enabled_modules=[Module.TIMECARD],
        requested_by="admin",
        permissions=perms,
    )
    sync = SyncProcoreEntities(account_id=account, entity=ProcoreEntity.EMPLOYEE, requested_by="m", permissions=perms)

    async with serve_mapping(mapping_settings(cfg)) as mapping_url:
        assert (await connect_service_account(cfg, mapping_url, account, company_id, perms))["status"] == "done"
        await produce(cfg.kafka, cfg.topics.mapping_commands, [setup], key=account.encode())
        assert (await outcome(cfg.dsn, cfg.schemas["mapping"], setup.event_id))["status"] == "done"
        started = time.monotonic()
        await produce(cfg.kafka, cfg.topics.mapping_commands, [sync], key=account.encode())
        done = await outcome(cfg.dsn, cfg.schemas["mapping"], sync.event_id, timeout_s=60)
        elapsed = time.monotonic() - started

    assert done["status"] == "done", done
    assert done["details"]["total"] == PEOPLE, done
    rows = await fetch(
        cfg.dsn,
        f'SELECT count(*) AS n FROM "{cfg.schemas["mapping"]}".procore_entities WHERE account_id = $1'
        " AND entity = 'employee' AND NOT gone",
        account,
    )
    assert rows[0]["n"] == PEOPLE

    async with httpx.AsyncClient(base_url=f"{sandbox}/_sandbox") as control:
        log = (await control.get("/requests", params={"company_id": company_id, "path": "/people"})).json()
    calls = log if isinstance(log, list) else log["requests"]
    statuses = [c["status"] for c in calls]
    pages = PEOPLE // PER_PAGE
    print(f"\n10,000 people: {len(calls)} requests in {elapsed:.1f} s, statuses {sorted(set(statuses))}")
    assert 429 not in statuses, "the client must wait for X-Rate-Limit-Reset instead of hitting the limit"
    assert statuses == [200] * pages  # every page once: no retries were needed
    assert elapsed >= (pages / SPIKE - 1) * 10 * TIME_SCALE  # it did wait for the windows to reset
    assert elapsed < 30
