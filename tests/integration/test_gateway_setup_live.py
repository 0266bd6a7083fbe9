"""The Setup screen follows a saved setup live, with no polling: the real broker, the mapping service (in process,
under uvicorn), PostgreSQL, and the gateway under uvicorn with a server-sent events client over real HTTP.

`PUT /api/setup` is a command; the mapping service commits the setup with its "Setup saved" outcome, and its
trigger NOTIFYs — the gateway's live stream turns that into `mapping` {what: "setups"}. `GET /api/setup` reads that
same committed setup, so the first read after the event already shows it. The aggregator is deliberately not
running here: its copy of the setup never arrives, which is what a lagging copy looks like at its worst.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from services.gateway.bootstrap import build_app as build_gateway
from shared.broker import ensure_topics
from shared.events import Module
from tests.integration.test_gateway_live import EventStream, read_events
from tests.support.database import ProvisionedDatabase, migrated
from tests.support.mapping import auth, bind_company, gateway_settings, mapping_settings, serve_asgi, serve_mapping
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration


async def test_a_saved_setup_arrives_live_and_reads_at_once(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str], database: ProvisionedDatabase
) -> None:
    account = f"acc-setup-live-{unique}"
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    await migrated(database, "aggregator")  # the gateway's read contract; nobody fills it here
    headers = auth(account)
    async with (
        serve_mapping(mapping_settings(cfg)) as mapping_url,
        serve_asgi(build_gateway(gateway_settings(cfg, mapping_url))) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        await bind_company(postgres_dsn, schemas["mapping"], account, 4242, "Live Builders")
        before = (await http.get("/api/setup", headers=headers)).json()
        assert before["enabled_modules"] == [], before
        assert "modules" in before["missing"], before

        stream = EventStream()
        ticket = (await http.post("/api/live/ticket", headers=headers)).json()["ticket"]
        reader = asyncio.create_task(read_events(http, f"/api/live?ticket={ticket}", stream))
        try:
            _, ready = await stream.next("ready")
            assert ready == {"listening": True}
            started = time.monotonic()
            saved = await http.put(
                "/api/setup",
                json={"procore_company_id": 4242, "enabled_modules": ["manpower", "timecard"], "two_way": False},
                headers=headers,
            )
            assert saved.status_code == 202, saved.text
            at, _ = await stream.next("mapping", timeout_s=30, what="setups")
            print(f"\nPUT /api/setup → live `mapping` setups event: {(at - started) * 1000:.0f} ms")
            # The first read after the event already holds the saved setup: nothing to poll for.
            now = (await http.get("/api/setup", headers=headers)).json()
            assert now["procore_company_id"] == 4242, now
            assert now["enabled_modules"] == [Module.MANPOWER.value, Module.TIMECARD.value], now
            assert "modules" not in now["missing"], now
            assert "company" not in now["missing"], now
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
