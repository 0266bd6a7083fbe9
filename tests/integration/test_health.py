"""Liveness and readiness over real HTTP: a service whose database is away is alive but not ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from devstack.ports import free_port
from services.gateway.bootstrap import build_app as build_gateway
from services.gateway.config import GatewaySettings
from services.gateway.tokens import Principal, issue_dev_token
from shared import db
from shared.readiness import Readiness
from tests.integration.worker_app import running_worker
from tests.support.database import ProvisionedDatabase, role_dsn
from tests.support.kafka import eventually
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, "127.0.0.1", port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def get(url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        response = await client.get(url)
    return response.status_code, response.json()


async def test_gateway_is_alive_but_not_ready_while_its_database_is_away(
    kafka_bootstrap: str, database: ProvisionedDatabase, unique: str
) -> None:
    proxy, proxied = TcpProxy.for_dsn(database.admin)
    settings = GatewaySettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=role_dsn(proxied, database.layout.role("gateway")),
        topic_prefix=f"{unique}.",
        environment="development",  # HS256 tokens: no key server to reach
        jwt_secret="s" * 32,
        aggregator_schema=database.schema("aggregator"),
    )
    async with proxy, serving(build_gateway(settings)) as base:
        ready = {"status": "ok", "database": True, "broker": True}
        assert await get(f"{base}/health/ready") == (200, ready)
        assert await get(f"{base}/health") == (200, ready)
        assert await get(f"{base}/health/live") == (200, {"status": "alive"})

        await proxy.cut()
        _, body = await eventually(lambda: get(f"{base}/health/ready"), lambda r: r[0] == 503)
        assert body == {"status": "not ready", "database": False, "broker": True}
        assert (await get(f"{base}/health"))[0] == 503
        assert await get(f"{base}/health/live") == (200, {"status": "alive"})
        # A signed-in read while the database is away: unavailable (503, try again), not a server error.
        token = issue_dev_token(Principal("u1", "acc-1"), "s" * 32, 600)
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            week = await client.get(
                f"{base}/api/modules/manpower/dashboard",
                params={"week_start": "2026-11-23"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert week.status_code == 503, week.text
        assert week.headers["Retry-After"]
        assert "database" in week.json()["detail"]

        await proxy.restore()
        await eventually(lambda: get(f"{base}/health/ready"), lambda r: r == (200, ready), what="ready again")


async def test_gateway_readiness_includes_registered_components(
    kafka_bootstrap: str, database: ProvisionedDatabase, unique: str
) -> None:
    settings = GatewaySettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database.dsn("gateway"),
        topic_prefix=f"{unique}.",
        environment="development",  # HS256 tokens: no key server to reach
        jwt_secret="s" * 32,
        aggregator_schema=database.schema("aggregator"),
    )
    app = build_gateway(settings)
    app.state.readiness = Readiness()
    async with serving(app) as base:
        app.state.readiness.not_ready("outbox relay", "not healthy")
        assert await get(f"{base}/health/ready") == (
            503,
            {"status": "not ready", "database": True, "broker": True, "not_ready": {"outbox relay": "not healthy"}},
        )


async def test_event_driven_service_is_alive_while_a_consumer_waits_out_an_outage(
    kafka_bootstrap: str, postgres_dsn: str, unique: str
) -> None:
    proxy, proxied = TcpProxy.for_dsn(postgres_dsn)
    schema = f"t_{unique}_worker"
    try:
        async with (
            proxy,
            running_worker(kafka_bootstrap, proxied, schema, f"{unique}.", read_dsn=postgres_dsn) as worker,
        ):
            await eventually(worker.ready, lambda r: r[0] == 200, what="ready")
            await proxy.cut()
            _, body = await eventually(worker.ready, lambda r: r[0] == 503)
            assert body["database"] is False
            assert body["status"] == "not ready"
            assert await get(f"{worker.url}/health/live") == (200, {"status": "alive"})
            assert (await get(f"{worker.url}/health"))[0] == 503
            await proxy.restore()
            await eventually(worker.ready, lambda r: r[0] == 200, what="ready again")
    finally:
        await db.drop_schemas(postgres_dsn, [schema])


async def test_event_driven_service_is_not_ready_while_a_registered_component_is_unhealthy(
    kafka_bootstrap: str, postgres_dsn: str, unique: str
) -> None:
    schema = f"t_{unique}_worker"
    try:
        async with running_worker(kafka_bootstrap, postgres_dsn, schema, f"{unique}.") as worker:
            await eventually(worker.ready, lambda r: r[0] == 200, what="ready")
            worker.probe.healthy = False
            assert await worker.ready() == (
                503,
                {"status": "not ready", "broker": True, "database": True, "not_ready": {"relay": "not healthy"}},
            )
            worker.probe.healthy = True
            assert (await worker.ready())[0] == 200
    finally:
        await db.drop_schemas(postgres_dsn, [schema])
