"""The minimal real path through every service, in one OpenTelemetry trace.

timelog event → aggregator entry (visible over the gateway's HTTP API) → publish command (gateway) →
publish request (outbox) → publisher → Procore sandbox over HTTP → result → entry Published.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal

import asyncpg
import httpx
import pytest
from faststream.kafka import KafkaBroker
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.gateway.bootstrap import build_app as build_gateway
from services.gateway.config import GatewaySettings
from services.gateway.tokens import Principal, issue_dev_token
from shared.broker import make_broker
from shared.events import (
    ConfigureSetup,
    Module,
    ProcoreEntity,
    SetMapping,
    TimelogUpserted,
)
from tests.support.kafka import eventually
from tests.support.mapping import bind_company
from tests.support.principals import TEST_BACKEND
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 20)
SECRET = "walking-skeleton-secret-0123456789abcdef"
ACCOUNT = "acc-skeleton"


async def seed_procore(base_url: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post(
            "/_sandbox/companies",
            json={"name": "Skeleton Builders", "projects": [{"name": "Tower A"}], "vendors": [{"name": "Acme"}]},
        )
        response.raise_for_status()
        body = response.json()
    return {
        "company": body["company_id"],
        "project": body["projects"][0]["id"],
        "vendor": body["vendors"][0],
    }


async def entry_status(dsn: str, schema: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(f'SELECT status FROM "{schema}".entries WHERE module = $1', "manpower")
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()


@asynccontextmanager
async def gateway(cfg: StackConfig, provider: TracerProvider) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(
        kafka_bootstrap_servers=cfg.kafka,
        database_url=cfg.dsn_of("gateway"),
        topic_prefix=cfg.prefix,
        jwt_secret=SECRET,
        environment="development",
        aggregator_schema=cfg.schemas["aggregator"],
        mapping_schema=cfg.schemas["mapping"],
    )
    app = build_gateway(settings, tracer_provider=provider)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http,
    ):
        yield http


def traced() -> dict[str, str]:
    """The dashboard's request headers: a user token and the current trace context."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    who = Principal("office-user", ACCOUNT, frozenset({"procore.publish"}))
    headers["Authorization"] = f"Bearer {issue_dev_token(who, SECRET, 600)}"
    return headers


@asynccontextmanager
async def mobiclocks_core(kafka: str, cfg: StackConfig, provider: TracerProvider) -> AsyncIterator[KafkaBroker]:
    """A stand-in for MobiClocks core and the dashboard's commands: a traced producer."""
    broker = make_broker(kafka, "mobiclocks-core", cfg.topics, provider)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


async def test_one_trace_from_timelog_to_published(
    kafka_bootstrap: str, postgres_dsn: str, procore_sandbox_url: str, unique: str, schemas: dict[str, str]
) -> None:
    ids = await seed_procore(procore_sandbox_url)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("walking-skeleton")
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=procore_sandbox_url)
    topics = cfg.topics
    account = ACCOUNT

    async with running(cfg, provider=provider), mobiclocks_core(kafka_bootstrap, cfg, provider) as core:
        # The account proved the company before (binding by proof: tests/integration/test_mapping_binding.py).
        await bind_company(postgres_dsn, schemas["mapping"], account, ids["company"])
        with tracer.start_as_current_span("walking-skeleton") as root:
            setup = ConfigureSetup(
                account_id=account,
                procore_company_id=ids["company"],
                enabled_modules=[Module.MANPOWER],
                **TEST_BACKEND.requester(),
            )
            await core.publish(setup, topic=topics.mapping_commands, key=account.encode())
            for entity, mc_id, procore_id in (
                (ProcoreEntity.PROJECT, "site-1", ids["project"]),
                (ProcoreEntity.VENDOR, "company-1", ids["vendor"]),
            ):
                cmd = SetMapping(
                    account_id=account,
                    entity=entity,
                    mobiclocks_id=mc_id,
                    procore_id=procore_id,
                    **TEST_BACKEND.requester(),
                )
                await core.publish(cmd, topic=topics.mapping_commands, key=account.encode())
            timelog = TimelogUpserted(
                account_id=account,
                timelog_id="tl-1",
                revision=1,
                employee_id="emp-1",
                company_id="company-1",
                crew_tag="Framers",
                job_site_id="site-1",
                work_date=DAY,
                duration_seconds=8 * 3600,
                pay_id="REG",
            )
            await core.publish(timelog, topic=topics.timelogs, key=f"{account}:site-1".encode())

            async with gateway(cfg, provider) as http:
                cell = f"/api/modules/manpower/cells/site-1/{DAY.isoformat()}"

                async def rows() -> list[dict[str, object]]:
                    response = await http.get(cell, headers=traced())
                    return list(response.json()["rows"]) if response.status_code == 200 else []

                (row,) = await eventually(rows, lambda r: len(r) == 1 and r[0]["status"] == "todo", what="To do")
                assert row["crew_tag"] == "Framers"
                assert row["manpower"] == 1
                response = await http.post(
                    "/api/modules/manpower/publish",
                    json={
                        "action": "publish",
                        "scope": {"kind": "cell", "job_site_id": "site-1", "work_date": str(DAY)},
                    },
                    headers=traced(),
                )
                assert response.status_code == 202, response.text
                await eventually(rows, lambda r: r[0]["status"] == "published", what="Published")
            trace_id = root.get_span_context().trace_id

    async with httpx.AsyncClient(base_url=procore_sandbox_url) as http:
        records = (await http.get("/_sandbox/records/manpower_logs", params={"company_id": ids["company"]})).json()
    logs = records if isinstance(records, list) else records.get("records", records)
    assert len(logs) == 1
    assert logs[0]["num_workers"] == 1
    assert Decimal(logs[0]["num_hours"]) == Decimal(8)
    assert logs[0]["vendor"]["id"] == ids["vendor"]
    assert "Framers [mc:" in logs[0]["notes"]

    spans = exporter.get_finished_spans()
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    names = {s.name for s in in_trace}
    assert any(s.name.startswith("POST /api/modules/{module}/publish") for s in in_trace), names
    assert any(topics.publish_commands in n and "process" in n for n in names), names
    assert "aggregate timelog" in names, names
    assert any(topics.publish_requests in n and "process" in n for n in names), names
    assert any(topics.publish_results in n and "process" in n for n in names), names
    assert any(
        s.attributes
        and str(s.attributes.get("http.url", s.attributes.get("url.full", ""))).endswith(
            f"/projects/{ids['project']}/manpower_logs"
        )
        for s in in_trace
    ), names
