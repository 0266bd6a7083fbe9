"""The one place that wires the aggregator: settings → broker, pool, subscribers (`entrypoint.router`), outbox
relay, publish sweeper, auto-publisher, remapper."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from faststream.asgi import AsgiFastStream
from opentelemetry.sdk.trace import TracerProvider

from services.aggregator import entrypoint, handlers
from services.aggregator.adapters.store import Store
from services.aggregator.config import AggregatorSettings
from services.aggregator.remapper import Remapper
from services.aggregator.status_metrics import EntryStatusGauges
from services.aggregator.sweeper import PublishSweeper
from shared import db, metrics
from shared.app import health_checks, make_service_app
from shared.broker import DeadLetters, consumer_options, ensure_topics, make_broker
from shared.outbox import OutboxRelay
from shared.records import DeadLetterSink
from shared.telemetry import instrument_asyncpg, make_tracer_provider, name_trace_in_transaction

SERVICE = "aggregator"
E = TypeVar("E")
AUTO_PUBLISH_BATCH = 500
"""Entries one auto-publish transaction publishes at most (a round repeats while it finds a full batch)."""


@dataclass
class Running:
    """What the lifespan starts, None until it has: subscribers, health checks and metrics reach it through this."""

    pool: asyncpg.Pool | None = None
    relay: OutboxRelay | None = None
    sweeper: PublishSweeper | None = None
    auto_publisher: PublishSweeper | None = None
    remapper: Remapper | None = None

    dead_letters: DeadLetterSink | None = None

    def database(self) -> asyncpg.Pool:
        assert self.pool is not None, "started by the lifespan before any consumer runs"
        return self.pool

    @asynccontextmanager
    async def tables(self) -> AsyncIterator[Store]:
        """The aggregator's tables in one transaction (committed when the block ends without an error)."""
        async with self.database().acquire() as conn, conn.transaction():
            yield Store(conn)

    async def apply_timelogs(self, records: Sequence[Any]) -> None:
        assert self.dead_letters is not None, "set when the app is built"
        await handlers.apply_timelog_records(self.tables, records, self.dead_letters)

    async def run(self, use_case: entrypoint.UseCase[E], event: E, *, traced: bool = False) -> None:
        async with self.tables() as store:
            if traced:
                await name_trace_in_transaction(store.conn)
            await use_case(store, event)

    def wake_relay(self) -> None:
        assert self.relay is not None, "started by the lifespan before any consumer runs"
        self.relay.notify()


def build_app(settings: AggregatorSettings, tracer_provider: TracerProvider | None = None) -> AsgiFastStream:
    provider = tracer_provider or make_tracer_provider(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    topics = settings.topics
    tracer = provider.get_tracer(SERVICE)
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider, consumer=settings)
    running = Running()
    metrics.on_scrape(broker, EntryStatusGauges(lambda: running.pool).refresh)

    async def publish_raw(body: bytes, topic: str, key: str, headers: dict[str, str]) -> None:
        await broker.publish(body, topic=topic, key=key.encode(), headers=headers)

    options = consumer_options(SERVICE, settings.kafka_session_timeout_ms, topics.prefix)

    running.dead_letters = DeadLetters(broker, SERVICE, topics)
    redrive = handlers.RedrivePolicy(settings.publish_redrive_after_s, settings.publish_redrive_max_interval_s)
    remap = handlers.RemapPolicy(settings.remap_quiet_s, settings.remap_max_delay_s, settings.remap_chunk_entries)

    broker.include_router(
        entrypoint.router(
            topics,
            options,
            (settings.batch_max_records, settings.batch_timeout_ms),
            tracer,
            redrive,
            lambda: running,
        )
    )

    async def redrive_overdue_publishes() -> int:
        async with running.database().acquire() as conn, conn.transaction():
            await name_trace_in_transaction(conn)
            sent = await handlers.redrive_stalled_publishes(Store(conn), topics, redrive)
        if sent:
            running.wake_relay()
        return sent

    async def auto_publish_due() -> int:
        async with running.database().acquire() as conn, conn.transaction():
            await name_trace_in_transaction(conn)
            sent = await handlers.auto_publish(Store(conn), topics, redrive, AUTO_PUBLISH_BATCH)
        if sent:
            running.wake_relay()
        return sent

    # Declared so the AsyncAPI document shows what the outbox relay sends.
    broker.publisher(topics.publish_requests, description="Publish requests for the publisher (via the outbox).")

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        dsn = settings.database_url.get_secret_value()
        instrument_asyncpg(provider)
        await ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_topic_partitions)
        await db.migrate(dsn, settings.db_schema, "services.aggregator.migrations")
        pool = running.pool = await db.create_pool(dsn, settings.db_schema)
        relay = running.relay = OutboxRelay(
            pool, publish_raw, settings.db_schema, settings.outbox_batch_size, settings.outbox_poll_interval_s
        )
        relay.start()
        sweeper = running.sweeper = PublishSweeper(
            redrive_overdue_publishes, redrive.batch, settings.publish_sweep_interval_s
        )
        sweeper.start()
        auto_publisher = running.auto_publisher = PublishSweeper(
            auto_publish_due, AUTO_PUBLISH_BATCH, settings.auto_publish_interval_s
        )
        auto_publisher.start()
        remapper = running.remapper = Remapper(pool, remap, settings.remap_poll_interval_s)
        remapper.start()
        try:
            yield
        finally:
            await remapper.stop()
            await auto_publisher.stop()
            await sweeper.stop()
            await relay.stop()
            await pool.close()
            provider.force_flush()

    return make_service_app(
        broker,
        title="MobiClocks Procore aggregator",
        description="Turns timelogs into manpower, timecard and production-quantity entries and owns their status.",
        check=health_checks(broker, lambda: running.pool),
        lifespan=lifespan,
        components={
            "outbox relay": lambda: running.relay,
            "publish sweeper": lambda: running.sweeper,
            "remapper": lambda: running.remapper,
            "auto-publish": lambda: running.auto_publisher,
        },
    )
