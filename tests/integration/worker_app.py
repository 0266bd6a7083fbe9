"""A small consumer service built from the shared pieces only (broker factory, record parser, poison isolation,
readiness, health routes), served over real HTTP, writing to real PostgreSQL: what every service does, minus
the domain. Tests steer its failures through `Probe`."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import uvicorn
from aiokafka import AIOKafkaProducer
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ConfigDict, TypeAdapter

from devstack.ports import free_port
from shared import db
from shared.app import health_checks, make_service_app
from shared.broker import DeadLetters, consumer_options, ensure_topics, make_broker, raw_bodies
from shared.records import apply_isolating_poison, failure_reason, parse_records
from shared.settings import ConsumerSettings
from shared.topics import Topics
from shared.transient import Transient

SERVICE = "worker"
ATTEMPTS = 3


class Work(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    n: int = 0


WORK: TypeAdapter[Work] = TypeAdapter(Work)


@dataclass
class Probe:
    """What the handlers saw, and the failures a test wants them to have."""

    deliveries: Counter[str] = field(default_factory=Counter)
    transient_until: float = 0.0
    """Handlers raise `Transient` until this monotonic time."""
    broken: set[str] = field(default_factory=set)
    """Ids whose handling raises a deterministic error (a bug)."""
    isolate: bool = True
    """The batch handler isolates poison records (False: it lets errors escape, as a careless one would)."""
    healthy: bool = True
    """What the worker's registered component (think: an outbox relay) reports."""


@dataclass
class Worker:
    url: str
    topics: Topics
    probe: Probe
    schema: str
    dsn: str

    @property
    def batch_topic(self) -> str:
        return f"{self.topics.prefix}work"

    @property
    def single_topic(self) -> str:
        return f"{self.topics.prefix}single"

    @property
    def dead_letter_topic(self) -> str:
        return self.topics.dead_letter(SERVICE)

    async def ready(self) -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            response = await client.get(f"{self.url}/health/ready")
        return response.status_code, response.json()

    async def done(self) -> dict[str, int]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(f'SELECT id, n FROM "{self.schema}".done')
        finally:
            await conn.close()
        return {r["id"]: r["n"] for r in rows}


SETTINGS = ConsumerSettings(
    consumer_retry_base_s=0.05,
    consumer_retry_cap_s=0.5,
    consumer_max_attempts=ATTEMPTS,
    consumer_pause_log_interval_s=1.0,
)


def build(kafka: str, dsn: str, schema: str, topics: Topics, probe: Probe) -> Any:
    broker = make_broker(kafka, SERVICE, topics, consumer=SETTINGS)
    dead_letters = DeadLetters(broker, SERVICE, topics)
    state: dict[str, asyncpg.Pool] = {}
    options = consumer_options(SERVICE, 2000, topics.prefix)

    async def store(works: Sequence[Work]) -> None:
        for work in works:
            probe.deliveries[work.id] += 1
        if time.monotonic() < probe.transient_until:
            raise Transient("a peer is not ready")
        if probe.broken & {w.id for w in works}:
            raise ValueError("a bug in the handler")
        async with state["pool"].acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO done (id, n) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING", [(w.id, w.n) for w in works]
            )

    @broker.subscriber(
        f"{topics.prefix}work", **options, batch=True, max_records=50, batch_timeout_ms=20, decoder=raw_bodies
    )
    async def on_work(bodies: list[bytes], message: KafkaMessage) -> None:
        valid, rejects = parse_records(message.raw_message, WORK)
        for record, reason in rejects:
            await dead_letters.send(record, reason)
        if not probe.isolate:
            await store([w for _, w in valid])
            return

        async def apply(items: Sequence[tuple[Any, Work]]) -> None:
            await store([w for _, w in items])

        async def reject(item: tuple[Any, Work], error: BaseException) -> None:
            await dead_letters.send(item[0], failure_reason(error, ATTEMPTS))

        await apply_isolating_poison(valid, apply, reject, attempts=ATTEMPTS, retry_delay_s=0.05)

    @broker.subscriber(f"{topics.prefix}single", **{**options, "group_id": f"{options['group_id']}.single"})
    async def on_single(work: Work) -> None:
        await store([work])

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await ensure_topics(kafka, [f"{topics.prefix}work", f"{topics.prefix}single", topics.dead_letter(SERVICE)])
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                f'CREATE SCHEMA IF NOT EXISTS "{schema}";'
                f'CREATE TABLE IF NOT EXISTS "{schema}".done (id text PRIMARY KEY, n int NOT NULL CHECK (n >= 0))'
            )
        finally:
            await conn.close()
        state["pool"] = await db.create_pool(dsn, schema)
        try:
            yield
        finally:
            await state["pool"].close()

    return make_service_app(
        broker,
        title="test worker",
        description="a consumer made of the shared pieces",
        check=health_checks(broker, lambda: state.get("pool")),
        lifespan=lifespan,
        components={"relay": probe},
    )


@asynccontextmanager
async def running_worker(
    kafka: str, dsn: str, schema: str, prefix: str, probe: Probe | None = None, read_dsn: str | None = None
) -> AsyncIterator[Worker]:
    """Serve the worker on a free port; `dsn` is what it uses (maybe through a proxy), `read_dsn` what tests read."""
    probe = probe or Probe()
    topics = Topics(prefix)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build(kafka, dsn, schema, topics, probe), "127.0.0.1", port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield Worker(f"http://127.0.0.1:{port}", topics, probe, schema, read_dsn or dsn)
    finally:
        server.should_exit = True
        await task


async def send(kafka: str, topic: str, values: Sequence[bytes | BaseModel], max_request_size: int = 1 << 20) -> None:
    """Produce in order, each value keyed by its position (spreads them over partitions)."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, max_request_size=max_request_size, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic, v if isinstance(v, bytes) else v.model_dump_json().encode(), key=str(i % 7).encode()
            )
            for i, v in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
