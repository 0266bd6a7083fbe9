"""Helpers for publisher tests: a Procore sandbox handle, publish requests per module, results by request id,
the check that every request sent to the sandbox matches Procore's OpenAPI subset, and publisher instances
(in this process, or as processes) with short leases."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.asgi import AsgiFastStream
from opentelemetry.sdk.trace import TracerProvider

from devstack.ports import free_port
from sandbox.procore.spec import validate_request
from services.publisher.bootstrap import build_app
from services.publisher.config import PublisherSettings
from shared.broker import ensure_topics
from shared.events import Module, ProcoreOperation, ProcorePublishFinished, PublishOutcome, PublishToProcore
from tests.support.stack import StackConfig

ROOT = Path(__file__).resolve().parents[2]

FAST = {
    "publisher_lease_ttl_s": 2.0,
    "publisher_lease_margin_s": 0.5,
    "publisher_takeover_grace_s": 0.5,
    "publisher_retry_base_s": 0.2,
    "publisher_retry_max_s": 2.0,
    "outbox_poll_interval_s": 0.2,
}
"""Short leases and backoff, so takeovers and recoveries happen within a test's patience."""

DAY = date(2026, 11, 20)
KIND = {
    Module.MANPOWER: "manpower_logs",
    Module.TIMECARD: "timecard_entries",
    Module.PRODUCTION_QUANTITY: "quantity_logs",
}


@dataclass(frozen=True)
class Company:
    id: int
    project: int
    vendor: int
    person: int
    time_type: int
    cost_code: int


class Sandbox:
    """The sandbox's control API (`/_sandbox`), as a Procore user or an operator would use it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=30)
        self.start_seq = 0
        """The request log's last `seq` when the test began."""

    async def aclose(self) -> None:
        await self.http.aclose()

    async def company(self, name: str = "Builders") -> Company:
        response = await self.http.post(
            "/_sandbox/companies",
            json={
                "name": f"{name} {uuid.uuid4().hex[:6]}",
                "projects": [{"name": "Tower A", "cost_codes": [{"full_code": "03-300", "name": "Concrete"}]}],
                "vendors": [{"name": "Acme Framing"}],
                "people": [{"first_name": "Ada", "last_name": "Lovelace", "employee_id": "E1"}],
            },
        )
        response.raise_for_status()
        body = response.json()
        project = body["projects"][0]
        return Company(
            id=body["company_id"],
            project=project["id"],
            vendor=body["vendors"][0],
            person=body["people"][0],
            time_type=body["timecard_time_types"][0]["id"],
            cost_code=project["cost_codes"][0]["id"],
        )

    async def records(self, module: Module, company: Company, live_only: bool = True) -> list[dict[str, Any]]:
        response = await self.http.get(f"/_sandbox/records/{KIND[module]}", params={"company_id": company.id})
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return [r for r in records if not (live_only and r.get("deleted"))]

    async def edit(self, module: Module, record_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.patch(f"/_sandbox/records/{KIND[module]}/{record_id}", json=fields)
        response.raise_for_status()
        edited: dict[str, Any] = response.json()
        return edited

    async def delete(self, module: Module, record_id: int) -> None:
        (await self.http.delete(f"/_sandbox/records/{KIND[module]}/{record_id}")).raise_for_status()

    async def fault(self, **spec: Any) -> None:
        (await self.http.post("/_sandbox/faults", json=spec)).raise_for_status()

    async def clear_faults(self) -> None:
        (await self.http.delete("/_sandbox/faults")).raise_for_status()

    async def settings(self, **values: Any) -> None:
        (await self.http.put("/_sandbox/settings", json=values)).raise_for_status()

    async def expire_tokens(self) -> None:
        (await self.http.post("/_sandbox/tokens/expire")).raise_for_status()

    async def requests(self, company_id: int | None = None, since: int = 0) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"since": since}
        if company_id is not None:
            params["company_id"] = company_id
        response = await self.http.get("/_sandbox/requests", params=params)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries

    async def last_seq(self) -> int:
        entries = await self.requests()
        return max((e["seq"] for e in entries), default=0)

    async def client(self, client_id: str, companies: list[Company]) -> None:
        """Another OAuth app installed in these companies: an instance using it shows in the request log."""
        body = {
            "client_id": client_id,
            "client_secret": f"{client_id}-secret",
            "company_ids": [c.id for c in companies],
        }
        (await self.http.post("/_sandbox/clients", json=body)).raise_for_status()


@asynccontextmanager
async def checked_sandbox(url: str) -> AsyncIterator[Sandbox]:
    """A handle on a test's own sandbox; afterwards every request it got is checked against the OpenAPI subset,
    and its faults, settings and data are reset."""
    handle = Sandbox(url)
    handle.start_seq = await handle.last_seq()
    try:
        yield handle
        assert_match_spec(await handle.requests(since=handle.start_seq))
    finally:
        await handle.clear_faults()
        await handle.http.post("/_sandbox/reset")
        await handle.aclose()


def assert_match_spec(entries: list[dict[str, Any]]) -> int:
    """Every logged request (not dropped before it was read) validates against the OpenAPI subset."""
    checked = 0
    for e in entries:
        if not e["path"].startswith(("/rest/", "/oauth/token")):
            continue
        headers = {k: str(v) for k, v in e["headers"].items() if v not in (None, False) and k != "authorization"}
        if e["headers"].get("authorization"):
            headers["Authorization"] = "Bearer logged-token"
        url = f"https://api.procore.com{e['path']}" + (f"?{e['query']}" if e["query"] else "")
        body = e["body"]
        if isinstance(body, dict) and "***" in body.values():
            body = {k: ("redacted" if v == "***" else v) for k, v in body.items()}
        validate_request(e["method"], url, headers, None if body is None else json.dumps(body).encode())
        checked += 1
    return checked


def payload_for(module: Module, company: Company, marker: str, **overrides: Any) -> dict[str, Any]:
    """The body the aggregator would send (inside its wrapper key)."""
    if module is Module.MANPOWER:
        base: dict[str, Any] = {
            "date": DAY.isoformat(),
            "num_workers": 3,
            "num_hours": "8.00",
            "contact_id": company.vendor,
            "notes": f"Framers {marker}",
        }
    elif module is Module.TIMECARD:
        base = {
            "date": DAY.isoformat(),
            "hours": "7.50",
            "party_id": company.person,
            "timecard_time_type_id": company.time_type,
            "cost_code_id": company.cost_code,
            "origin_id": uuid.uuid4().int >> 75,
            "origin_data": marker,
            "description": marker,
        }
    else:
        base = {
            "date": DAY.isoformat(),
            "quantity": 12,
            "unit": "m3",
            "cost_code_id": company.cost_code,
            "description": marker,
        }
    return base | overrides


def request_for(
    module: Module,
    company: Company,
    operation: ProcoreOperation = ProcoreOperation.CREATE,
    *,
    entry_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
    after: ProcorePublishFinished | None = None,
    force: bool = False,
    account_id: str = "acc-pub",
) -> PublishToProcore:
    """A publish request; `after` is the previous result of the same entry (its Procore id and baseline)."""
    entry = entry_id or (after.entry_id if after else uuid.uuid4())
    marker = f"[mc:{entry.hex[:16]}]"
    return PublishToProcore(
        account_id=account_id,
        entry_id=entry,
        entry_version=1,
        module=module,
        operation=operation,
        procore_company_id=company.id,
        procore_project_id=company.project,
        work_date=DAY,
        payload={} if operation is ProcoreOperation.DELETE else (payload or payload_for(module, company, marker)),
        marker=marker,
        procore_id=after.procore_id if after else None,
        published_updated_at=after.procore_updated_at if after else None,
        published_payload=after.published_payload if after else None,
        force=force,
    )


class Results:
    """Publish results as they arrive, by request id (one consumer for the whole test)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        self.by_request: dict[uuid.UUID, list[ProcorePublishFinished]] = {}
        self.headers: dict[uuid.UUID, list[dict[str, str]]] = {}

    async def __aenter__(self) -> Results:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def _poll(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=100)
        for records in batch.values():
            for record in records:
                result = ProcorePublishFinished.model_validate_json(record.value)
                self.by_request.setdefault(result.request_id, []).append(result)
                headers = {k: v.decode() for k, v in (record.headers or ())}
                self.headers.setdefault(result.request_id, []).append(headers)

    async def wait(self, request_id: uuid.UUID, count: int = 1, timeout_s: float = 30.0) -> ProcorePublishFinished:
        deadline = time.monotonic() + timeout_s
        while len(self.by_request.get(request_id, [])) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no result for request {request_id} within {timeout_s}s")
            await self._poll()
        return self.by_request[request_id][0]

    async def settle(self, seconds: float) -> None:
        """Keep reading for a while (to see that nothing more arrives)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await self._poll()


class Requests:
    """A producer of publish requests onto the request topic (with an optional trace context)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        self._topic = topic

    async def __aenter__(self) -> Requests:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(
        self, *requests: PublishToProcore, headers: dict[str, str] | None = None, partition: int | None = None
    ) -> None:
        for request in requests:
            await self._producer.send_and_wait(
                self._topic,
                request.model_dump_json().encode(),
                key=f"{request.account_id}:{request.procore_project_id}".encode(),
                headers=[(k, v.encode()) for k, v in (headers or {}).items()],
                partition=partition,
            )

    async def send_everywhere(self, request: PublishToProcore) -> int:
        """The same request onto every partition (as a relay that sent it twice, keyed differently, would):
        every instance of the consumer group gets it. Returns how many copies were sent."""
        partitions = sorted(await self._producer.partitions_for(self._topic))
        for partition in partitions:
            await self.send(request, partition=partition)
        return len(partitions)


async def wait_until(check: Any, timeout_s: float = 20.0, interval_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)


# --------------------------------------------------------------------- publisher instances


@asynccontextmanager
async def wired_publisher(cfg: StackConfig, **overrides: Any) -> AsyncIterator[tuple[Requests, Results]]:
    """One publisher in this process with the settings a deployment has (plus `overrides`), and the request and
    result topics."""
    await ensure_topics(cfg.kafka, cfg.topics.all())
    app = build_app(PublisherSettings(**(cfg.common("publisher") | cfg.procore() | overrides)))
    async with (
        app.start_lifespan_context(),
        Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
        Results(cfg.kafka, cfg.topics.publish_results) as results,
    ):
        yield requests, results


def publisher_settings(cfg: StackConfig, **overrides: Any) -> PublisherSettings:
    return PublisherSettings(**(cfg.common("publisher") | cfg.procore() | FAST | overrides))


@asynccontextmanager
async def running_publisher(
    cfg: StackConfig, provider: TracerProvider | None = None, **overrides: Any
) -> AsyncIterator[AsgiFastStream]:
    """One publisher instance in this process (several may run side by side: one consumer group)."""
    await ensure_topics(cfg.kafka, cfg.topics.all())
    app = build_app(publisher_settings(cfg, **overrides), provider)
    async with app.start_lifespan_context():
        yield app


class Instance:
    """A publisher instance in this process whose lifespan runs in a task of its own, so instances can be stopped
    in any order (a lifespan's cancel scopes must be left by the task that entered them)."""

    def __init__(self, cfg: StackConfig, **overrides: Any) -> None:
        self._cfg = cfg
        self._overrides = overrides
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.app: AsgiFastStream | None = None

    async def _run(self) -> None:
        async with running_publisher(self._cfg, **self._overrides) as app:
            self.app = app
            self._started.set()
            await self._stop.wait()

    async def start(self) -> Instance:
        self._task = asyncio.create_task(self._run())
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            started.cancel()
            await self._task  # raises what stopped it
        return self

    async def stop(self) -> None:
        """A graceful stop (as on SIGTERM): workers stop, leases are released."""
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def __aenter__(self) -> Instance:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def health(app: AsgiFastStream) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://publisher") as http:
        response = await http.get("/health")
    body: dict[str, Any] = response.json()
    return response.status_code, body


def publisher_env(cfg: StackConfig, instance_id: str, **extra: Any) -> dict[str, str]:
    """The environment of a publisher process (`python -m services.publisher`)."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": cfg.kafka,
        "DATABASE_URL": cfg.dsn_of("publisher"),
        "TOPIC_PREFIX": cfg.prefix,
        "DB_SCHEMA": cfg.schemas["publisher"],
        "PROCORE_BASE_URL": cfg.procore_url,
        "PROCORE_LOGIN_URL": cfg.procore_url,
        "PROCORE_CLIENT_ID": "sandbox-client",
        "PROCORE_CLIENT_SECRET": "sandbox-secret",
        "PROCORE_MAX_ATTEMPTS": str(cfg.procore()["procore_max_attempts"]),
        "HTTP_PORT": str(free_port()),
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "LOG_LEVEL": "INFO",
        "PUBLISHER_INSTANCE_ID": instance_id,
    }
    env |= {name.upper(): str(value) for name, value in FAST.items()}
    env |= {name.upper(): str(value) for name, value in extra.items()}
    return env


def start_publisher_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.publisher"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def rows(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r.items()) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def live_instances(cfg: StackConfig) -> int:
    schema = cfg.schemas["publisher"]
    try:
        found = await rows(cfg.dsn, f'SELECT count(*) AS n FROM "{schema}".instances WHERE seen_until > now()')
    except asyncpg.UndefinedTableError:
        return 0
    return int(found[0]["n"])


def caller(entry: dict[str, Any]) -> str | None:
    """The publisher instance that made a logged call (its User-Agent names it)."""
    agent = entry["headers"].get("user-agent") or ""
    start = agent.find("(")
    return agent[start + 1 : agent.rindex(")")] if start >= 0 and agent.endswith(")") else None


async def until_live(cfg: StackConfig, count: int) -> None:
    async def enough() -> bool:
        return await live_instances(cfg) >= count

    await wait_until(enough, timeout_s=20)


@asynccontextmanager
async def two_publishers(cfg: StackConfig, **overrides: Any) -> AsyncIterator[tuple[Requests, Results]]:
    """Instances "a" and "b" in this process, both live, and the request and result topics."""
    async with (
        running_publisher(cfg, publisher_instance_id="a", **overrides),
        running_publisher(cfg, publisher_instance_id="b", **overrides),
        Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
        Results(cfg.kafka, cfg.topics.publish_results) as results,
    ):
        await until_live(cfg, 2)
        yield requests, results


async def answered_once_each(results: Results, batch: list[PublishToProcore], timeout_s: float = 60) -> None:
    for request in batch:
        result = await results.wait(request.request_id, timeout_s=timeout_s)
        assert result.outcome is PublishOutcome.PUBLISHED, result.message
        assert {(r.outcome, r.procore_id) for r in results.by_request[request.request_id]} == {
            (PublishOutcome.PUBLISHED, result.procore_id)
        }  # a repeated result is the same result


async def rest_calls(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The Procore API calls the sandbox logged since the test began."""
    return [e for e in await sandbox.requests(since=sandbox.start_seq) if e["path"].startswith("/rest/")]
