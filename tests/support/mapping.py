"""Helpers for the mapping service's tests: serve ASGI apps over real HTTP in this event loop, build settings,
read command outcomes, connect accounts by proof (a sandbox user's consent, or a customer's own service account)
through the gateway or the mapping service's internal API, run several mapping instances side by side, and read
what the outbox sent."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

from devstack.ports import free_port
from services.gateway.config import GatewaySettings
from services.gateway.tokens import Principal, issue_dev_token
from services.mapping.bootstrap import build_app as build_mapping
from services.mapping.config import MappingSettings
from tests.support.kafka import eventually
from tests.support.stack import TEST_TOKEN_KEY, StackConfig

INTERNAL_TOKEN = "internal-test-token-0123456789-abcdefghij"
JWT_SECRET = "mapping-tests-jwt-secret-0123456789-abcdef"
ALL_PERMISSIONS = ["procore.publish", "procore.mapping", "procore.setup"]


@asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Run an ASGI app (lifespan included) under uvicorn on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("server stopped during startup")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def mapping_settings(cfg: StackConfig, **overrides: Any) -> MappingSettings:
    values: dict[str, Any] = {
        **cfg.common("mapping"),
        **cfg.procore(),
        "token_encryption_keys": TEST_TOKEN_KEY,
        "internal_api_token": INTERNAL_TOKEN,
        "internal_http_port": free_port(),  # the internal API listens apart from the public port
        "procore_oauth_pkce": True,  # the sandbox implements RFC 7636
    }
    values.update(overrides)
    return MappingSettings(**values)


def internal_url(settings: MappingSettings) -> str:
    """Where the publisher and the gateway reach the mapping service: its internal API, never its public port."""
    return f"http://127.0.0.1:{settings.internal_http_port}"


@asynccontextmanager
async def serve_mapping(settings: MappingSettings, provider: TracerProvider | None = None) -> AsyncIterator[str]:
    """The mapping service under uvicorn; yields the base URL of its internal API."""
    async with serve_asgi(build_mapping(settings, provider)):
        yield internal_url(settings)


def gateway_settings(cfg: StackConfig, mapping_url: str = "", **overrides: Any) -> GatewaySettings:
    """The gateway as the tests reach it in-process (`http://gateway`), talking to the mapping service at
    `mapping_url` for connections."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": cfg.kafka,
        "database_url": cfg.dsn_of("gateway"),
        "topic_prefix": cfg.prefix,
        "environment": "development",  # development tokens (HS256) below
        "jwt_secret": JWT_SECRET,
        "aggregator_schema": cfg.schemas["aggregator"],
        "mapping_schema": cfg.schemas["mapping"],
        "public_base_url": "http://gateway",
        "mapping_url": mapping_url,
        "internal_api_token": INTERNAL_TOKEN,
    }
    values.update(overrides)
    return GatewaySettings(**values)


def auth(account: str, permissions: list[str] | None = None, user: str = "u1") -> dict[str, str]:
    who = Principal(user, account, frozenset(ALL_PERMISSIONS if permissions is None else permissions))
    return {"Authorization": f"Bearer {issue_dev_token(who, JWT_SECRET, 3600)}"}


async def outcome(dsn: str, schema: str, command_id: UUID | str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The mapping service's recorded outcome of a command, once there is one."""

    async def probe() -> dict[str, Any] | None:
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                f'SELECT status, message, details FROM "{schema}".command_outcomes WHERE command_id = $1',
                UUID(str(command_id)),
            )
        except asyncpg.UndefinedTableError:
            return None
        finally:
            await conn.close()
        if row is None:
            return None
        details = row["details"]
        return {"status": row["status"], "message": row["message"], "details": json.loads(details) if details else None}

    found = await eventually(probe, lambda r: r is not None, timeout_s=timeout_s, what=f"outcome of {command_id}")
    assert found is not None
    return found


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@dataclass(frozen=True)
class Consent:
    """One OAuth round trip: what the callback was given (the secrets a test then looks for) and its answer."""

    code: str
    state: str
    location: str
    """Where the gateway sent the browser back (`/#setup?connect_command=…` or `…connect_error=…`)."""

    @property
    def command_id(self) -> str:
        assert "connect_command=" in self.location, self.location
        return self.location.split("connect_command=")[1]


async def consent(authorize_url: str, login: str) -> tuple[str, str, str]:
    """The sandbox's consent as `login` (login_hint): (callback path and query, code, state)."""
    separator = "&" if "?" in authorize_url else "?"
    async with httpx.AsyncClient(timeout=10) as procore:
        answer = await procore.get(f"{authorize_url}{separator}login_hint={login}", follow_redirects=False)
    assert answer.status_code == 302, answer.text
    callback = urlsplit(answer.headers["location"])
    assert callback.path == "/oauth/procore/callback"
    query = parse_qs(callback.query)
    return f"{callback.path}?{callback.query}", query["code"][0], query["state"][0]


async def oauth_round_trip(gateway: httpx.AsyncClient, headers: dict[str, str], login: str) -> Consent:
    """The dashboard's "Connect with Procore" in one browser (`gateway` keeps its cookies): authorize, consent at
    the sandbox as `login`, back to the gateway's callback."""
    authorize = await gateway.get("/api/procore/authorize", headers=headers)
    assert authorize.status_code == 200, authorize.text
    callback, code, state = await consent(authorize.json()["authorize_url"], login)
    back = await gateway.get(callback, follow_redirects=False)
    assert back.status_code == 303, back.text
    return Consent(code, state, back.headers["location"])


async def sandbox_user(sandbox_url: str, login: str, company_ids: list[int], name: str = "") -> dict[str, Any]:
    """A Procore user of these companies (who may consent for them)."""
    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        created = await control.post("/_sandbox/users", json={"login": login, "name": name, "company_ids": company_ids})
    assert created.status_code == 201, created.text
    return dict(created.json())


async def service_account(sandbox_url: str, company_id: int) -> tuple[str, str]:
    """A service account the customer created in its own company: (client id, secret) reaching that company only."""
    async with httpx.AsyncClient(base_url=sandbox_url) as control:
        created = await control.post("/_sandbox/clients", json={"company_ids": [company_id], "name": "customer sa"})
    assert created.status_code == 201, created.text
    return created.json()["client_id"], created.json()["client_secret"]


async def internal(mapping_url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{mapping_url}/internal{path}", json=body, headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}
        )


async def connect_service_account(
    cfg: StackConfig, mapping_url: str, account: str, company_id: int, permissions: list[str] | None = None
) -> dict[str, Any]:
    """Connect `account` with a new service account of `company_id` (as the gateway does); the finished outcome."""
    client_id, secret = await service_account(cfg.procore_url, company_id)
    body = {
        "account_id": account,
        "user_id": "admin",
        "permissions": permissions or ALL_PERMISSIONS,
        "client_id": client_id,
        "client_secret": secret,
    }
    answer = await internal(mapping_url, "/procore/service-account", body)
    assert answer.status_code == 202, answer.text
    command_id = answer.json()["command_id"]
    return {**await outcome(cfg.dsn, cfg.schemas["mapping"], command_id, timeout_s=60), "command_id": command_id}


async def connect_user(cfg: StackConfig, mapping_url: str, account: str, login: str) -> dict[str, Any]:
    """Connect `account` by the consent of the sandbox user `login` (as the gateway does); the finished outcome."""
    body = {
        "account_id": account,
        "user_id": "admin",
        "permissions": ALL_PERMISSIONS,
        "redirect_uri": "http://gateway.test/oauth/procore/callback",
    }
    started = await internal(mapping_url, "/oauth/start", body)
    assert started.status_code == 200, started.text
    _, code, state = await consent(started.json()["authorize_url"], login)
    done = await internal(
        mapping_url, "/oauth/complete", {"state": state, "browser_nonce": started.json()["browser_nonce"], "code": code}
    )
    assert done.status_code == 202, done.text
    command_id = done.json()["command_id"]
    return {**await outcome(cfg.dsn, cfg.schemas["mapping"], command_id, timeout_s=60), "command_id": command_id}


# --- several instances ---------------------------------------------------------------------------


def _int(attributes: Mapping[str, object], name: str) -> int:
    value = attributes[name]
    assert isinstance(value, int), (name, value)
    return value


@dataclass
class Instance:
    """One running mapping service: its internal API's base URL and the spans it recorded (which records it
    consumed)."""

    internal: str
    spans: InMemorySpanExporter

    def consumed(self, topic: str) -> list[tuple[int, int]]:
        """(partition, offset) of every record of `topic` this instance processed."""
        return [
            (_int(a, "messaging.kafka.destination.partition"), _int(a, "messaging.kafka.message.offset"))
            for span in self.spans.get_finished_spans()
            if (a := span.attributes or {}).get("messaging.destination_publish.name") == topic
            and "messaging.kafka.message.offset" in a
        ]


@asynccontextmanager
async def mapping_instance(cfg: StackConfig, **overrides: Any) -> AsyncIterator[Instance]:
    """A mapping service under uvicorn with its own span recorder; same settings = same consumer group."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with serve_mapping(mapping_settings(cfg, **overrides), provider) as url:
        yield Instance(url, exporter)


async def produce_to_partitions(bootstrap: str, topic: str, messages: Sequence[tuple[int, BaseModel]]) -> None:
    """Send each message to the partition given (commands for one account normally share one partition;
    spreading them is how a test makes several instances work on one account at once)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, message in messages:
            await producer.send_and_wait(topic, message.model_dump_json().encode(), partition=partition)
    finally:
        await producer.stop()


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return sorted(await producer.partitions_for(topic))
    finally:
        await producer.stop()


# --- the outbox ----------------------------------------------------------------------------------


@asynccontextmanager
async def relays_held(dsn: str, schema: str) -> AsyncIterator[None]:
    """Keep every outbox relay of the schema from sending (hold the lock they take): as if the process had
    died between its commit and the send."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"outbox:{schema}")
        yield
    finally:
        await conn.close()  # releases the session lock


async def outbox_rows(dsn: str, schema: str) -> list[dict[str, Any]]:
    rows = await fetch(dsn, f'SELECT topic, key, payload::text AS payload FROM "{schema}".outbox ORDER BY id')
    return [{"topic": r["topic"], "key": r["key"], **json.loads(r["payload"])} for r in rows]


async def sent_changes(cfg: StackConfig, account: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every change sent for `account` on mapping.changes, once the outbox is empty (all sent), in order."""
    schema = cfg.schemas["mapping"]
    await eventually(lambda: outbox_rows(cfg.dsn, schema), lambda rows: not rows, timeout_s, "an empty outbox")
    return await changes_on_topic(cfg, account)


async def records_on_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record the topic holds now (aiokafka ConsumerRecords), whichever partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(bootstrap, topic)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(*partitions, timeout_ms=500)
            records += [r for part in batch.values() for r in part]
    finally:
        await consumer.stop()
    return records


async def changes_on_topic(cfg: StackConfig, account: str) -> list[dict[str, Any]]:
    """What mapping.changes holds for `account` right now, in order."""
    records = await records_on_topic(cfg.kafka, cfg.topics.mapping_changes)
    mine = [r for r in records if r.key == account.encode()]
    # One account's changes share one partition, so offsets give their order.
    return [json.loads(r.value) for r in sorted(mine, key=lambda r: r.offset)]


async def bind_company(dsn: str, schema: str, account: str, company_id: int, name: str = "Seeded") -> None:
    """Seed a binding as if `account` had proven `company_id` (for tests about something else than the proof)."""
    await fetch(
        dsn,
        f'INSERT INTO "{schema}".company_bindings (procore_company_id, account_id, name, proof)'
        " VALUES ($1, $2, $3, 'customer_credentials')",
        company_id,
        account,
        name,
    )
