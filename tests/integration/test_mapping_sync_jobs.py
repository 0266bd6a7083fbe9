"""A sync that has to wait for Procore's rate-limit reset runs as a background job: the consumer goes on.

Company Slow's hourly budget (the sandbox's limits, time-scaled: the hour lasts HOUR_S seconds) is spent
before its sync is asked for, so the sync has to wait for the reset. Meanwhile the mapping service keeps
handling commands — of another account (its own sync included) and of the waiting account itself — stays
and keeps its consumer group membership (the same member, no rebalance); the job shows as waiting
(with the time it waits for) in the read contract the gateway reads, and finishes once the limit resets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.broker import ensure_topics
from shared.db import read_schema
from shared.events import ConfigureSetup, Module, ProcoreEntity, SyncProcoreEntities
from tests.sandbox_fixtures import run_sandbox
from tests.support.kafka import eventually, produce
from tests.support.mapping import (
    fetch,
    internal,
    mapping_settings,
    outcome,
    serve_mapping,
    service_account,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration

HOUR_S = 25.0
HOURLY = 20
PERMS = ["procore.setup", "procore.mapping"]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


async def connect(cfg: StackConfig, mapping_url: str, account: str, company_id: int) -> tuple[str, str]:
    """Connect `account` with a service account of the company; its client credentials (its rate budget)."""
    client_id, secret = await service_account(cfg.procore_url, company_id)
    body = {
        "account_id": account,
        "user_id": "admin",
        "permissions": PERMS,
        "client_id": client_id,
        "client_secret": secret,
    }
    answer = await internal(mapping_url, "/procore/service-account", body)
    assert answer.status_code == 202, answer.text
    done = await outcome(cfg.dsn, cfg.schemas["mapping"], answer.json()["command_id"], timeout_s=60)
    assert done["status"] == "done", done
    return client_id, secret


async def spend_budget(sandbox: str, client_id: str, secret: str, company_id: int) -> float:
    """Call Procore as the account's connection until the hourly budget is gone; the reset (Unix seconds)."""
    async with httpx.AsyncClient(base_url=sandbox, timeout=30) as http:
        token = (
            await http.post(
                "/oauth/token",
                json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Procore-Company-Id": str(company_id)}
        for _ in range(HOURLY + 1):
            answer = await http.get("/rest/v1.0/vendors", params={"company_id": company_id}, headers=headers)
            if answer.status_code == 429:
                return float(answer.headers["X-Rate-Limit-Reset"])
            assert answer.status_code == 200, answer.text
    raise AssertionError("the budget was not spent")


async def job_of(cfg: StackConfig, job_id: Any) -> dict[str, Any] | None:
    """The job as the gateway reads it: through the mapping service's read contract."""
    view = read_schema(cfg.schemas["mapping"])
    rows = await fetch(cfg.dsn, f'SELECT * FROM "{view}".sync_jobs WHERE job_id = $1', job_id)
    return dict(rows[0]) if rows else None


async def members(kafka: str, group: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    return sorted(str(m[0]) for response in described for g in response.groups for m in g[5])


async def test_a_sync_waiting_for_the_rate_limit_never_blocks_the_consumer(
    sandbox: str, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=f"{sandbox}/_sandbox", timeout=30) as control:
        slow = (
            await control.post("/companies", json={"name": "Slow", "vendors": [{"name": "V1"}, {"name": "V2"}]})
        ).json()
        fast = (await control.post("/companies", json={"name": "Fast", "vendors": [{"name": "W1"}]})).json()
        limits = {"rate_limit_hourly": HOURLY, "rate_limit_spike": 1000, "rate_limit_time_scale": HOUR_S / 3600}
        (await control.put("/settings", json=limits)).raise_for_status()
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    slow_account, fast_account = f"slow-{unique}", f"fast-{unique}"
    mapping = cfg.schemas["mapping"]

    def sync(account: str) -> SyncProcoreEntities:
        return SyncProcoreEntities(account_id=account, entity=ProcoreEntity.VENDOR, requested_by="m", permissions=PERMS)

    def setup(account: str, company: int, modules: list[Module]) -> ConfigureSetup:
        return ConfigureSetup(
            account_id=account,
            procore_company_id=company,
            enabled_modules=modules,
            requested_by="admin",
            permissions=PERMS,
        )

    settings = mapping_settings(cfg, sync_job_lease_s=5.0)
    async with serve_mapping(settings) as mapping_url:
        slow_client = await connect(cfg, mapping_url, slow_account, slow["company_id"])
        await connect(cfg, mapping_url, fast_account, fast["company_id"])
        for s in (
            setup(slow_account, slow["company_id"], [Module.MANPOWER]),
            setup(fast_account, fast["company_id"], [Module.MANPOWER]),
        ):
            await produce(cfg.kafka, cfg.topics.mapping_commands, [s], key=s.account_id.encode())
            assert (await outcome(cfg.dsn, mapping, s.event_id))["status"] == "done"
        group = f"{cfg.prefix}mapping"
        before = await members(cfg.kafka, group)
        assert len(before) == 1, before

        reset_at = await spend_budget(sandbox, *slow_client, slow["company_id"])
        waited = sync(slow_account)
        await produce(cfg.kafka, cfg.topics.mapping_commands, [waited], key=slow_account.encode())

        job = await eventually(
            lambda: job_of(cfg, waited.event_id),
            lambda j: j is not None and j["state"] == "waiting",
            timeout_s=30,
            what="the slow sync waiting for the reset",
        )
        assert job is not None
        assert job["waiting_until"] is not None
        assert abs(job["waiting_until"].timestamp() - reset_at) < 3, (job, reset_at)
        assert job["progress_done"] == 0
        assert job["progress_total"] == 1

        # While it waits: another account's sync, and a command of the waiting account itself, are handled.
        other, changed = sync(fast_account), setup(slow_account, slow["company_id"], [Module.MANPOWER, Module.TIMECARD])
        await produce(cfg.kafka, cfg.topics.mapping_commands, [other], key=fast_account.encode())
        await produce(cfg.kafka, cfg.topics.mapping_commands, [changed], key=slow_account.encode())
        other_done = await outcome(cfg.dsn, mapping, other.event_id, timeout_s=30)
        changed_done = await outcome(cfg.dsn, mapping, changed.event_id, timeout_s=30)
        assert other_done["status"] == "done", other_done
        assert other_done["details"]["total"] == 1, other_done
        assert changed_done["status"] == "done", changed_done
        handled_at = time.time()
        assert handled_at < reset_at - 1, "the other commands were handled while the slow sync waited"
        assert (await job_of(cfg, waited.event_id) or {})["state"] == "waiting"
        assert (
            await fetch(cfg.dsn, f'SELECT 1 FROM "{mapping}".command_outcomes WHERE command_id = $1', waited.event_id)
        ) == []

        # The reset comes: the job goes on and finishes; the consumer kept its place in the group throughout.
        done = await outcome(cfg.dsn, mapping, waited.event_id, timeout_s=HOUR_S + 30)
        finished_at = time.time()
        assert done["status"] == "done", done
        assert done["details"]["total"] == 2, done
        assert finished_at >= reset_at
        job = await job_of(cfg, waited.event_id)
        assert job is not None
        assert job["state"] == "done"
        assert (job["progress_done"], job["progress_total"]) == (1, 1)
        assert job["finished_at"] <= datetime.now(UTC)
        assert job["error"] is None
        assert await members(cfg.kafka, group) == before, "the consumer never left its group (no rebalance)"

    async with httpx.AsyncClient(base_url=f"{sandbox}/_sandbox") as control:
        log = (await control.get("/requests", params={"company_id": slow["company_id"]})).json()
    calls = log if isinstance(log, list) else log["requests"]
    # One 429 ended the spending above; the sync's first call may meet one more (it learns the reset from it).
    assert sum(1 for c in calls if c["status"] == 429) <= 2, "it waits for the reset instead of hammering Procore"
