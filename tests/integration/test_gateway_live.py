"""Live updates end to end: events on the real broker → the aggregator (in process) commits → PostgreSQL NOTIFY →
the gateway's one LISTEN connection → a server-sent events client over real HTTP (uvicorn).

Measures, and prints, the latency from handing an event to the broker to the SSE event arriving, for a timelog
change, a mapping change and a publish result (the issue asks for ≤ 2 s; asserted only against a generous 10 s
ceiling, as wall-clock limits do not belong in tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.ports import free_port
from services.gateway.bootstrap import build_app
from services.gateway.config import GatewaySettings
from services.gateway.entrypoint import server as gateway_server
from services.gateway.tokens import Principal, issue_dev_token
from shared.events import (
    MappingChanged,
    Module,
    ProcoreEntity,
    ProcorePublishFinished,
    PublishOutcome,
    PublishToProcore,
    SetupChanged,
    TimelogUpserted,
)
from tests.support.database import ProvisionedDatabase, migrated
from tests.support.kafka import consume, produce
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-0123456789-abcdef"
DAY = date(2026, 11, 23)
CEILING_S = 10.0


def auth(account: str) -> dict[str, str]:
    who = Principal("u1", account, frozenset({"procore.publish", "procore.mapping", "procore.setup"}))
    return {"Authorization": f"Bearer {issue_dev_token(who, SECRET, 3600)}"}


@dataclass
class EventStream:
    """Server-sent events as they arrive, each with its arrival time (monotonic)."""

    events: asyncio.Queue[tuple[float, str, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    seen: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def next(self, wanted: str, timeout_s: float = 20.0, **match: Any) -> tuple[float, dict[str, Any]]:
        async with asyncio.timeout(timeout_s):
            while True:
                at, name, data = await self.events.get()
                if name == wanted and all(data.get(k) == v for k, v in match.items()):
                    return at, data


async def read_events(http: httpx.AsyncClient, url: str, into: EventStream) -> None:
    async with http.stream("GET", url, timeout=httpx.Timeout(5.0, read=None)) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        name, data = "message", ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line == "" and data:
                body = json.loads(data)
                into.seen.append((name, body))
                await into.events.put((time.monotonic(), name, body))
                name, data = "message", ""


@contextlib.asynccontextmanager
async def gateway(database: ProvisionedDatabase, kafka: str, prefix: str) -> AsyncIterator[str]:
    settings = GatewaySettings(
        kafka_bootstrap_servers=kafka,
        database_url=database.dsn("gateway"),
        topic_prefix=prefix,
        environment="development",
        jwt_secret=SECRET,
        aggregator_schema=database.schema("aggregator"),
        mapping_schema=database.schema("mapping"),
    )
    port = free_port()
    server = gateway_server(build_app(settings), "127.0.0.1", port, "warning")
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def timelog(account: str, revision: int, hours: int) -> TimelogUpserted:
    return TimelogUpserted(
        account_id=account,
        timelog_id="t1",
        revision=revision,
        employee_id="e1",
        company_id="c1",
        crew_tag="A",
        job_site_id="s1",
        work_date=DAY,
        duration_seconds=hours * 3600,
        pay_id="REG",
    )


async def entry_status(database: ProvisionedDatabase, account: str) -> str | None:
    conn = await asyncpg.connect(database.admin)
    try:
        status: str | None = await conn.fetchval(
            f'SELECT status FROM "{database.schema("aggregator")}".entries WHERE account_id = $1', account
        )
        return status
    finally:
        await conn.close()


async def test_changes_reach_a_live_client_of_the_account_only_and_fast(
    kafka_bootstrap: str, unique: str, database: ProvisionedDatabase
) -> None:
    account, other = f"live-{unique}", f"other-{unique}"
    cfg = StackConfig(kafka_bootstrap, database.admin, f"{unique}.", database.schemas)
    topics = cfg.topics
    await migrated(database, "mapping")  # its triggers feed the `mapping` events
    async with (
        running(cfg, which=("aggregator",)),
        gateway(database, kafka_bootstrap, cfg.prefix) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        ours, theirs = EventStream(), EventStream()
        tickets = [(await http.post("/api/live/ticket", headers=auth(a))).json()["ticket"] for a in (account, other)]
        readers = [
            asyncio.create_task(read_events(http, f"/api/live?ticket={tickets[0]}", ours)),
            asyncio.create_task(read_events(http, f"/api/live?ticket={tickets[1]}", theirs)),
        ]
        try:
            _, ready = await ours.next("ready")
            assert ready == {"listening": True}
            await theirs.next("ready")
            latencies: dict[str, float] = {}

            await produce(
                kafka_bootstrap,
                topics.mapping_changes,
                [
                    SetupChanged(
                        account_id=account, procore_company_id=7, enabled_modules=[Module.MANPOWER], two_way=False
                    )
                ],
                key=account.encode(),
            )
            # 1. A timelog change: the new entry (Non publishable: nothing is mapped yet) reaches the client. The
            # first one after start also measures the consumer's warm-up; the second is the steady state.
            for revision, hours in ((1, 8), (2, 9)):
                started = time.monotonic()
                await produce(
                    kafka_bootstrap, topics.timelogs, [timelog(account, revision, hours)], key=f"{account}:s1".encode()
                )
                at, data = await ours.next("entries", module="manpower")
                latencies[f"timelog change #{revision}"] = at - started
                assert data["dates"] == [DAY.isoformat()]
            assert await entry_status(database, account) == "non_publishable"

            # 2. A mapping change: the entry turns To do on screen without a reload.
            vendor = MappingChanged(
                account_id=account, entity=ProcoreEntity.VENDOR, mobiclocks_id="c1", procore_id=21, procore_name="Acme"
            )
            project = MappingChanged(
                account_id=account, entity=ProcoreEntity.PROJECT, mobiclocks_id="s1", procore_id=11, procore_name="T"
            )
            await produce(kafka_bootstrap, topics.mapping_changes, [vendor], key=account.encode())
            await ours.next("entries", module="manpower")
            started = time.monotonic()
            await produce(kafka_bootstrap, topics.mapping_changes, [project], key=account.encode())
            at, _ = await ours.next("entries", module="manpower")
            latencies["mapping change"] = at - started
            assert await entry_status(database, account) == "todo"
            board = await http.get(
                "/api/modules/manpower/dashboard", params={"week_start": "2026-11-23"}, headers=auth(account)
            )
            assert board.json()["rows"][0]["days"][0]["status"] == "todo"

            # 3. A publish result: Publishing → Published reaches the client.
            accepted = await http.post(
                "/api/modules/manpower/publish",
                json={"action": "publish", "scope": {"kind": "cell", "job_site_id": "s1", "work_date": "2026-11-23"}},
                headers=auth(account),
            )
            assert accepted.status_code == 202, accepted.text
            await ours.next("entries", module="manpower")  # Publishing
            [record] = await consume(kafka_bootstrap, topics.publish_requests, 1)
            request = PublishToProcore.model_validate_json(record.value)
            result = ProcorePublishFinished(
                account_id=account,
                request_id=request.request_id,
                entry_id=request.entry_id,
                entry_version=request.entry_version,
                module=request.module,
                outcome=PublishOutcome.PUBLISHED,
                procore_id=4242,
            )
            started = time.monotonic()
            await produce(kafka_bootstrap, topics.publish_results, [result], key=f"{account}:s1".encode())
            at, _ = await ours.next("entries", module="manpower")
            latencies["publish result"] = at - started
            assert await entry_status(database, account) == "published"

            # 4. The mapping service's own rows (what the Data mapping tabs show): a `mapping` event.
            conn = await asyncpg.connect(database.admin)
            try:
                started = time.monotonic()
                await conn.execute(
                    f'INSERT INTO "{database.schema("mapping")}".mappings (account_id, entity, mobiclocks_id,'
                    " procore_id, source) VALUES ($1, 'vendor', 'c1', 21, 'manual')",
                    account,
                )
            finally:
                await conn.close()
            at, data = await ours.next("mapping")
            latencies["mapping row"] = at - started
            assert data == {"what": "mappings"}

            for what, seconds in latencies.items():
                print(f"live latency, {what}: {seconds * 1000:.0f} ms")
                assert seconds < CEILING_S, latencies
            # The other account heard nothing of it.
            await asyncio.sleep(0.3)
            assert [name for name, _ in theirs.seen] == ["ready"], theirs.seen
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)


async def test_live_needs_a_ticket_never_the_bearer_token(kafka_bootstrap: str, database: ProvisionedDatabase) -> None:
    await migrated(database, "aggregator", "mapping")
    async with gateway(database, kafka_bootstrap, "nolive.") as base, httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/api/live")).status_code == 401
        bearer = auth("acc")["Authorization"].removeprefix("Bearer ")
        refused = await http.get("/api/live", params={"ticket": bearer})
        assert refused.status_code == 401
        assert "ticket" in refused.json()["detail"]
        assert (await http.post("/api/live/ticket")).status_code == 401
        ticket = (await http.post("/api/live/ticket", headers=auth("acc"))).json()
        assert ticket["expires_in"] == 120
        assert ticket["ticket"] != bearer


async def test_open_streams_end_when_the_gateway_stops(kafka_bootstrap: str, database: ProvisionedDatabase) -> None:
    """uvicorn waits for open responses before it stops: a live stream is told `bye` instead of holding it up."""
    await migrated(database, "aggregator", "mapping")
    stream = EventStream()
    async with httpx.AsyncClient() as http:
        stopping = gateway(database, kafka_bootstrap, "stop.")
        base = await stopping.__aenter__()
        ticket = (await http.post(f"{base}/api/live/ticket", headers=auth("acc"))).json()["ticket"]
        reader = asyncio.create_task(read_events(http, f"{base}/api/live?ticket={ticket}", stream))
        await stream.next("ready")
        started = time.monotonic()
        async with asyncio.timeout(CEILING_S):
            await stopping.__aexit__(None, None, None)
        print(f"gateway stopped in {time.monotonic() - started:.2f} s with a live client")
        await asyncio.wait_for(reader, CEILING_S)  # the stream ended, cleanly
    assert [name for name, _ in stream.seen] == ["ready", "bye"]
