"""The suite's edges to the system: Kafka (send, read back), the gateway HTTP API, the sandbox control API.

Everything retries across outages (a user or MobiClocks core would try again), so that a scenario's
fault hits the system, never the harness.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from tests.chaos.generator import Outgoing

log = logging.getLogger("chaos")

Position = tuple[str, int, int]
"""(topic, partition, offset) of a record."""

PERMISSIONS = ["procore.mapping", "procore.publish", "procore.setup"]


class Unavailable(Exception):
    """A 5xx or connection error: worth another try."""


def _retryable(error: BaseException) -> bool:
    return isinstance(error, Unavailable | httpx.TransportError)


def _retrying(patience_s: float) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception(_retryable),
        wait=wait_exponential(multiplier=0.2, max=3.0),
        stop=stop_after_delay(patience_s),
        reraise=True,
    )


# --- Kafka -------------------------------------------------------------------------------------------


@dataclass
class Sent:
    """A message the broker acknowledged (at least once: retries may have written it twice)."""

    out: Outgoing
    event_id: str | None
    positions: list[Position]


class Sender:
    """Sends generated messages, retrying each until the broker acknowledges it; remembers positions."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.producer: AIOKafkaProducer | None = None
        self.positions: dict[Position, Sent] = {}
        self.sent = 0
        self.retries = 0

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            linger_ms=20,
            request_timeout_ms=5000,
            max_request_size=4 * 1024 * 1024,  # the oversized poison message has to get in
            retry_backoff_ms=200,
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def send(self, outs: Iterable[Outgoing]) -> list[Sent]:
        assert self.producer is not None
        todo = [Sent(o, o.value.get("event_id") if isinstance(o.value, dict) else None, []) for o in outs]
        done: list[Sent] = []
        delay = 0.2
        while todo:
            enqueued: list[tuple[Sent, Any]] = []
            failed: list[Sent] = []
            for n, s in enumerate(todo):
                body = s.out.value if isinstance(s.out.value, bytes) else json.dumps(s.out.value).encode()
                try:
                    enqueued.append((s, await self.producer.send(s.out.topic, body, key=s.out.key.encode())))
                except KafkaError:
                    failed.extend(todo[n:])  # the broker is away: the rest would wait for it one by one
                    break
            results = await asyncio.gather(*(f for _, f in enqueued), return_exceptions=True)
            for (s, _), r in zip(enqueued, results, strict=True):
                if isinstance(r, BaseException):
                    failed.append(s)
                    continue
                position = (r.topic, r.partition, r.offset)
                s.positions.append(position)
                self.positions[position] = s
                done.append(s)
            self.sent += len(todo) - len(failed)
            if failed:
                self.retries += len(failed)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            todo = failed
        return done


async def read_all(bootstrap: str, topics: list[str], quiet_s: float = 1.0, cap_s: float = 180.0) -> list[Any]:
    """Every record of `topics`: at least up to the end offsets, then until nothing new came for `quiet_s`.

    Not bounded by the end offsets alone: Tansu 0.6's ListOffsets(latest) answers the last batch's base
    offset + 1, not the high watermark, so reading "up to the end" would miss each partition's last batch;
    nor by quiet alone: on s3 storage one fetch can take longer than any quiet time.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        request_timeout_ms=60_000,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        await consumer.topics()  # fetches the cluster metadata
        parts = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        if not parts:
            return []
        ends = await consumer.end_offsets(parts)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen: dict[TopicPartition, int] = {}
        start = quiet_since = time.monotonic()
        while time.monotonic() - start < cap_s:
            batch = await consumer.getmany(timeout_ms=250, max_records=5000)
            for tp, recs in batch.items():
                records.extend(recs)
                if recs:
                    seen[tp] = recs[-1].offset + 1
            if any(batch.values()):
                quiet_since = time.monotonic()
            reached = all(seen.get(tp, 0) >= end for tp, end in ends.items())
            if reached and time.monotonic() - quiet_since >= quiet_s:
                break
    finally:
        await consumer.stop()
    return records


# --- the gateway HTTP API --------------------------------------------------------------------------


class Gateway:
    """Signs in as a user of an account (a JWT made with the gateway's secret) and calls its API."""

    def __init__(self, base_url: str, jwt_secret: str, patience_s: float = 120) -> None:
        self.base_url = base_url
        self.secret = jwt_secret
        self.patience_s = patience_s
        self.http = httpx.AsyncClient(base_url=base_url, timeout=15.0, trust_env=False)
        self._tokens: dict[str, str] = {}

    async def close(self) -> None:
        await self.http.aclose()

    def token(self, account_id: str) -> str:
        if account_id not in self._tokens:
            now = datetime.now(UTC)
            claims = {
                # the gateway's development tokens (ENVIRONMENT=development): HS256, its own issuer and audience
                "iss": "procore-gateway-dev-login",
                "aud": "procore-gateway-development",
                "sub": "chaos-user",
                "account_id": account_id,
                "permissions": PERMISSIONS,
                "iat": int(now.timestamp()),
                "exp": int((now + timedelta(hours=12)).timestamp()),
            }
            self._tokens[account_id] = jwt.encode(claims, self.secret, algorithm="HS256")
        return self._tokens[account_id]

    async def call(
        self, method: str, account_id: str, path: str, *, json_body: Any = None, params: Any = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(account_id)}"}
        async for attempt in _retrying(self.patience_s):
            with attempt:
                response = await self.http.request(method, path, json=json_body, params=params, headers=headers)
                if response.status_code >= 500:
                    raise Unavailable(f"{method} {path}: {response.status_code} {response.text[:200]}")
                return response
        raise AssertionError("unreachable")

    async def get(self, account_id: str, path: str, params: Any = None) -> Any:
        response = await self.call("GET", account_id, path, params=params)
        response.raise_for_status()
        return response.json()


# --- the sandbox control API -----------------------------------------------------------------------


class Sandbox:
    def __init__(self, base_url: str, patience_s: float = 60) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30.0, trust_env=False)
        self.patience_s = patience_s

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async for attempt in _retrying(self.patience_s):
            with attempt:
                response = await self.http.request(method, f"/_sandbox{path}", json=body)
                if response.status_code >= 500:
                    raise Unavailable(f"{method} {path}: {response.status_code}")
                response.raise_for_status()
                return response.json() if response.content else None
        raise AssertionError("unreachable")

    async def records(self, kind: str, company_id: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call("GET", f"/records/{kind}?company_id={company_id}")
        return found
