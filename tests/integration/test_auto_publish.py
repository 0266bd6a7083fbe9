"""Auto-publish (issue 13), end to end against the Procore sandbox: opted in on Setup (gateway → mapping →
aggregator), a module's To do entries are published without anyone pressing Publish, through the same path as a
manual publish, and their history names `system:auto-publish`; a module not opted in stays To do, and Failed
entries, Published ones and entries changed too recently are left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import date

import asyncpg
import httpx
import pytest

from services.aggregator import handlers
from services.aggregator.adapters.store import Store
from services.aggregator.bootstrap import build_app as build_aggregator
from services.aggregator.config import AggregatorSettings
from services.gateway.bootstrap import build_app as build_gateway
from services.gateway.config import GatewaySettings
from services.gateway.tokens import Principal, issue_dev_token
from shared import db
from shared.broker import ensure_topics
from shared.events import MappingChanged, Module, ProcoreEntity, SetMapping, SetupChanged, TimelogUpserted
from shared.topics import Topics
from tests.support.database import ProvisionedDatabase, migrated
from tests.support.kafka import eventually, produce
from tests.support.mapping import bind_company
from tests.support.principals import TEST_BACKEND
from tests.support.stack import StackConfig, make_apps

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 20)
SECRET = "auto-publish-secret-0123456789abcdef"
ACCOUNT = "acc-auto"


async def replica_mappings(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return int(await conn.fetchval("SELECT count(*) FROM mappings"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


@asynccontextmanager
async def stack(cfg: StackConfig) -> AsyncIterator[httpx.AsyncClient]:
    """Every service in this process, the aggregator looking for due entries every half second; the gateway's
    HTTP API as a client."""
    await ensure_topics(cfg.kafka, cfg.topics.all())
    apps = make_apps(cfg, ("publisher", "mapping"), None)
    apps["aggregator"] = build_aggregator(
        AggregatorSettings(**cfg.common("aggregator"), outbox_poll_interval_s=0.2, auto_publish_interval_s=0.5)
    )
    gateway = build_gateway(
        GatewaySettings(
            kafka_bootstrap_servers=cfg.kafka,
            database_url=cfg.dsn_of("gateway"),
            topic_prefix=cfg.prefix,
            jwt_secret=SECRET,
            environment="development",
            aggregator_schema=cfg.schemas["aggregator"],
            mapping_schema=cfg.schemas["mapping"],
        )
    )
    async with AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.start_lifespan_context())
        await stack.enter_async_context(gateway.router.lifespan_context(gateway))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway")
        )
        who = Principal("office-admin", ACCOUNT, frozenset({"procore.publish", "procore.setup"}))
        http.headers["Authorization"] = f"Bearer {issue_dev_token(who, SECRET, 600)}"
        yield http


async def test_an_opted_in_module_is_published_without_a_publish_command(
    kafka_bootstrap: str, postgres_dsn: str, procore_sandbox_url: str, unique: str, schemas: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=procore_sandbox_url) as sandbox:
        seeded = (
            await sandbox.post(
                "/_sandbox/companies",
                json={"name": "Auto Builders", "projects": [{"name": "Tower A"}], "vendors": [{"name": "Acme"}]},
            )
        ).json()
    company, project, vendor = seeded["company_id"], seeded["projects"][0]["id"], seeded["vendors"][0]
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=procore_sandbox_url)
    async with stack(cfg) as http:
        await bind_company(postgres_dsn, schemas["mapping"], ACCOUNT, company)
        body = {
            "procore_company_id": company,
            "enabled_modules": ["manpower", "timecard"],
            "auto_publish": {"manpower": 0},  # as soon as the sweep sees it
        }
        assert (await http.put("/api/setup", json=body)).status_code == 202
        setup = await eventually(
            lambda: http.get("/api/setup"), lambda r: r.json().get("auto_publish") == {"manpower": 0}, what="setup"
        )
        assert setup.json()["enabled_modules"] == ["manpower", "timecard"]
        for entity, mc_id, procore_id in (
            (ProcoreEntity.PROJECT, "site-1", project),
            (ProcoreEntity.VENDOR, "c1", vendor),
        ):
            cmd = SetMapping(
                account_id=ACCOUNT,
                entity=entity,
                mobiclocks_id=mc_id,
                procore_id=procore_id,
                **TEST_BACKEND.requester(),
            )
            await produce(kafka_bootstrap, cfg.topics.mapping_commands, [cmd], key=ACCOUNT.encode())
        await eventually(
            lambda: replica_mappings(postgres_dsn, schemas["aggregator"]), lambda n: n == 2, what="the mappings"
        )
        timelog = TimelogUpserted(
            account_id=ACCOUNT,
            timelog_id="t1",
            revision=1,
            employee_id="e1",
            company_id="c1",
            crew_tag="Framers",
            job_site_id="site-1",
            work_date=DAY,
            duration_seconds=8 * 3600,
            pay_id="REG",
        )
        await produce(kafka_bootstrap, cfg.topics.timelogs, [timelog], key=f"{ACCOUNT}:site-1".encode())

        cell = await eventually(
            lambda: http.get(f"/api/modules/manpower/cells/site-1/{DAY}"),
            lambda r: r.status_code == 200 and [row["status"] for row in r.json()["rows"]] == ["published"],
            timeout_s=40,
            what="the manpower entry published by auto-publish",
        )
        entry_id = cell.json()["rows"][0]["entry_id"]
        detail = (await http.get(f"/api/entries/{entry_id}")).json()
        steps = [(h["action"], h["requested_by"]) for h in detail["history"]]
        assert ("publish", "system:auto-publish") in steps, steps

        # the timecard module was not opted in: its entry waits for a person (it is not publishable here anyway, its
        # employee is not mapped; nothing was asked of it)
        timecard = (await http.get(f"/api/modules/timecard/cells/site-1/{DAY}")).json()["rows"]
        assert [row["status"] for row in timecard] == ["non_publishable"]
        timecard_detail = (await http.get(f"/api/entries/{timecard[0]['entry_id']}")).json()
        assert timecard_detail["history"] == []

    async with httpx.AsyncClient(base_url=procore_sandbox_url) as sandbox:
        records = (await sandbox.get("/_sandbox/records/manpower_logs", params={"company_id": company})).json()
    logs = records if isinstance(records, list) else records.get("records", records)
    assert len(logs) == 1
    assert logs[0]["num_workers"] == 1


@pytest.fixture
async def pool(database: ProvisionedDatabase) -> AsyncIterator[asyncpg.Pool]:
    await migrated(database, "aggregator")
    p = await db.create_pool(database.dsn("aggregator"), database.schema("aggregator"), max_size=2)
    yield p
    await p.close()


async def test_only_to_do_and_updated_entries_quiet_long_enough_are_auto_published(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        setup = SetupChanged(
            account_id="a",
            procore_company_id=1,
            enabled_modules=[Module.MANPOWER],
            two_way=False,
            auto_publish={Module.MANPOWER: 30},
        )
        await handlers.apply_mapping_change(Store(conn), setup)
        mapped = [(ProcoreEntity.PROJECT, "s1")] + [(ProcoreEntity.VENDOR, f"c{i}") for i in range(5)]
        for entity, mc_id in mapped:
            change = MappingChanged(account_id="a", entity=entity, mobiclocks_id=mc_id, procore_id=100)
            await handlers.apply_mapping_change(Store(conn), change)
        timelogs = [
            TimelogUpserted(
                account_id="a",
                timelog_id=f"t{i}",
                revision=1,
                employee_id=f"e{i}",
                company_id=f"c{i}",
                job_site_id="s1",
                work_date=DAY,
                duration_seconds=3600,
                pay_id="REG",
            )
            for i in range(5)
        ]
        await handlers.apply_timelog_events(Store(conn), timelogs)
        # c0 changed a minute ago, the others an hour ago; statuses as publishing would have left them
        await conn.execute(
            """
            UPDATE entries SET updated_at = now() - interval '1 hour',
                   status = CASE dims->>'company_id' WHEN 'c1' THEN 'updated' WHEN 'c2' THEN 'failed'
                                 WHEN 'c3' THEN 'published' ELSE status END,
                   procore_id = CASE WHEN dims->>'company_id' IN ('c1', 'c3') THEN 7 END
            """
        )
        await conn.execute(
            "UPDATE entries SET updated_at = now() - interval '1 minute' WHERE dims->>'company_id' = 'c0'"
        )
        assert await conn.fetchval("SELECT count(*) FROM entries WHERE status = 'todo'") == 2  # c0 and c4
        queued = await handlers.auto_publish(Store(conn), Topics(), handlers.RedrivePolicy())
    assert queued == 2  # c1 (Updated) and c4 (To do): not c0 (changed 1 minute ago), c2 (Failed), c3 (Published)
    rows = await pool.fetch(
        "SELECT e.dims->>'company_id' AS c, h.action, h.requested_by"
        " FROM publish_history h JOIN entries e USING (entry_id)"
    )
    assert sorted((r["c"], r["action"], r["requested_by"]) for r in rows) == [
        ("c1", "publish", "system:auto-publish"),
        ("c4", "publish", "system:auto-publish"),
    ]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 2  # the same requests a manual publish queues
    async with pool.acquire() as conn, conn.transaction():
        assert await handlers.auto_publish(Store(conn), Topics(), handlers.RedrivePolicy()) == 0  # Publishing now
