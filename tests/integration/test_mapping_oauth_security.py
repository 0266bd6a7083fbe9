"""OAuth done right: the state is tied to the browser that started the flow (login CSRF is refused), works once,
expires; the authorization code and the state never reach a span, an access-log line or a Kafka topic.

Real broker, real PostgreSQL, the sandbox over HTTP. The gateway and the mapping service run under uvicorn
(with access logs on) and record their spans in memory; each browser is an httpx client with its own cookies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devstack.ports import free_port
from services.gateway.bootstrap import build_app as build_gateway
from services.mapping.bootstrap import build_app as build_mapping
from shared.broker import ensure_topics
from tests.sandbox_fixtures import run_sandbox
from tests.support.mapping import (
    auth,
    consent,
    fetch,
    gateway_settings,
    internal_url,
    mapping_settings,
    oauth_round_trip,
    outcome,
    partitions_of,
    sandbox_user,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Flow:
    cfg: StackConfig
    gateway_url: str
    login: str
    spans: InMemorySpanExporter
    access_log: Lines

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.gateway_url, timeout=30)

    async def connections(self, account: str) -> list[Any]:
        return await fetch(
            self.cfg.dsn,
            f'SELECT status FROM "{self.cfg.schemas["mapping"]}".connections WHERE account_id = $1',
            account,
        )


@pytest.fixture
async def flow(
    sandbox: str, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> AsyncIterator[Flow]:
    async with httpx.AsyncClient(base_url=sandbox) as control:
        company = (await control.post("/_sandbox/companies", json={"name": f"Secure {unique}"})).json()
    login = f"pat-{unique}@secure.example"
    await sandbox_user(sandbox, login, [company["company_id"]])
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    access_log = Lines()
    gateway_port = free_port()
    mapping = mapping_settings(cfg)
    async with serve_on(build_mapping(mapping, provider), free_port(), access_log):
        mapping_url = internal_url(mapping)  # the gateway reaches the mapping service's internal API
        # The redirect URI is fixed by settings: here, where this gateway listens.
        settings = gateway_settings(
            cfg, mapping_url, public_base_url=f"http://127.0.0.1:{gateway_port}", http_port=gateway_port
        )
        async with serve_on(build_gateway(settings, provider), gateway_port, access_log) as gateway_url:
            yield Flow(cfg, gateway_url, login, spans, access_log)


@asynccontextmanager
async def serve_on(app: Any, port: int, access_log: Lines) -> AsyncIterator[str]:
    """Under uvicorn as the services run (access log on, at info)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="info")
    logging.getLogger("uvicorn.access").addHandler(access_log)  # after uvicorn configured its loggers
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "server stopped during startup"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        logging.getLogger("uvicorn.access").removeHandler(access_log)
        server.should_exit = True
        await task


async def start(browser: httpx.AsyncClient, account: str, login: str) -> tuple[str, str, str]:
    """Connect with Procore in this browser up to Procore's redirect back: (callback, code, state)."""
    authorize = await browser.get("/api/procore/authorize", headers=auth(account))
    assert authorize.status_code == 200, authorize.text
    cookie = authorize.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/oauth/procore/callback" in cookie
    return await consent(authorize.json()["authorize_url"], login)


async def test_login_csrf_a_callback_in_another_browser_is_refused(flow: Flow) -> None:
    async with flow.browser() as attacker, flow.browser() as victim:
        # The attacker starts a connection of its own account and sends its callback link to a victim.
        callback, _, _ = await start(attacker, "acc-attacker", flow.login)
        # The victim's browser has its own flow going (its own cookie): the attacker's state is not for it.
        await victim.get("/api/procore/authorize", headers=auth("acc-victim"))
        refused = await victim.get(callback, follow_redirects=False)
        assert refused.status_code == 303, refused.headers
        assert "another+browser" in refused.headers["location"], refused.headers
        # A browser without any cookie: refused too.
        callback, _, _ = await start(attacker, "acc-attacker", flow.login)
        async with flow.browser() as bare:
            cookieless = await bare.get(callback, follow_redirects=False)
        assert "another+browser" in cookieless.headers["location"]
    assert await flow.connections("acc-attacker") == []
    assert await flow.connections("acc-victim") == []


async def test_a_state_works_once(flow: Flow) -> None:
    async with flow.browser() as browser:
        callback, _, _ = await start(browser, "acc-once", flow.login)
        first = await browser.get(callback, follow_redirects=False)
        command = first.headers["location"].split("connect_command=")[1]
        assert (await outcome(flow.cfg.dsn, flow.cfg.schemas["mapping"], command))["status"] == "done"
        again = await browser.get(callback, follow_redirects=False)
    assert "already+used" in again.headers["location"], again.headers["location"]


async def test_an_expired_state_is_refused(flow: Flow) -> None:
    async with flow.browser() as browser:
        callback, _, _ = await start(browser, "acc-late", flow.login)
        await fetch(
            flow.cfg.dsn,
            f"""UPDATE "{flow.cfg.schemas["mapping"]}".oauth_attempts SET expires_at = now() - interval '1 s'""",
        )
        late = await browser.get(callback, follow_redirects=False)
    assert "expired" in late.headers["location"]
    assert await flow.connections("acc-late") == []


async def test_the_code_and_the_state_never_reach_spans_access_logs_or_kafka(flow: Flow) -> None:
    async with flow.browser() as browser:
        connected = await oauth_round_trip(browser, auth("acc-private"), flow.login)
    assert (await outcome(flow.cfg.dsn, flow.cfg.schemas["mapping"], connected.command_id))["status"] == "done"
    secrets = {"code": connected.code, "state": connected.state}

    # Spans of the gateway and the mapping service (the callback's request span included, scrubbed).
    spans = flow.spans.get_finished_spans()
    callback_spans = [s for s in spans if "/oauth/procore/callback" in str(dict(s.attributes or {}))]
    assert callback_spans, "the callback was traced"
    for span in spans:
        recorded = str(dict(span.attributes or {})) + span.name + str([dict(e.attributes or {}) for e in span.events])
        for name, value in secrets.items():
            assert value not in recorded, f"the {name} is in span {span.name}: {recorded}"

    # uvicorn's access log: the callback line is there, scrubbed.
    (line,) = [line for line in flow.access_log.lines if "/oauth/procore/callback" in line]
    assert "code=REDACTED" in line
    assert "state=REDACTED" in line
    for name, value in secrets.items():
        assert not [line for line in flow.access_log.lines if value in line], f"the {name} is in the access log"

    # Every topic, dead-letter topics included: values and headers.
    for name, value in secrets.items():
        assert not await topics_containing(flow.cfg, value), f"the {name} is on Kafka"

    # The mapping service keeps only a hash of the state.
    rows = await fetch(
        flow.cfg.dsn, f'SELECT state_hash::text AS h FROM "{flow.cfg.schemas["mapping"]}".oauth_attempts'
    )
    assert rows
    assert all(connected.state not in r["h"] for r in rows)


async def topics_containing(cfg: StackConfig, secret: str) -> list[str]:
    found = []
    consumer = AIOKafkaConsumer(bootstrap_servers=cfg.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        for topic in cfg.topics.all():
            partitions = [TopicPartition(topic, p) for p in await partitions_of(cfg.kafka, topic)]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await consumer.seek_to_beginning(*partitions)
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                batch = await consumer.getmany(*partitions, timeout_ms=500)
                for record in (r for part in batch.values() for r in part):
                    headers = b"".join(v for _, v in record.headers or ())
                    if secret.encode() in (record.value or b"") + headers:
                        found.append(topic)
    finally:
        await consumer.stop()
    return found
