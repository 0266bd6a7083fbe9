"""The one place that wires the aggregator: settings → broker, pool, subscribers, outbox relay, publish sweeper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from faststream.asgi import AsgiFastStream
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.sdk.trace import TracerProvider
from pydantic import Field

from services.aggregator import handlers
from services.aggregator.config import AggregatorSettings
from services.aggregator.sweeper import PublishSweeper
from shared import db
from shared.app import health_checks, make_service_app
from shared.broker import DeadLetters, consumer_options, ensure_topics, make_broker, raw_bodies
from shared.events import (
    MappingChanged,
    ProcorePublishFinished,
    PublishEntries,
    ReferenceDeleted,
    ReferenceUpserted,
    SetupChanged,
)
from shared.outbox import OutboxRelay
from shared.telemetry import instrument_asyncpg, make_tracer_provider, span_per_record

SERVICE = "aggregator"

AggregatorInput = Annotated[
    ReferenceUpserted | ReferenceDeleted | SetupChanged | MappingChanged | PublishEntries | ProcorePublishFinished,
    Field(discriminator="type"),
]


def build_app(settings: AggregatorSettings, tracer_provider: TracerProvider | None = None) -> AsgiFastStream:
    provider = tracer_provider or make_tracer_provider(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    topics = settings.topics
    tracer = provider.get_tracer(SERVICE)
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider, consumer=settings)
    state: dict[str, Any] = {}

    def pool() -> asyncpg.Pool:
        pool: asyncpg.Pool = state["pool"]
        return pool

    async def publish_raw(body: bytes, topic: str, key: str, headers: dict[str, str]) -> None:
        await broker.publish(body, topic=topic, key=key.encode(), headers=headers)

    options = consumer_options(SERVICE, settings.kafka_session_timeout_ms, topics.prefix)

    dead_letters = DeadLetters(broker, SERVICE, topics)
    redrive = handlers.RedrivePolicy(settings.publish_redrive_after_s, settings.publish_redrive_max_interval_s)

    @broker.subscriber(
        topics.timelogs,
        **options,
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        decoder=raw_bodies,
        description=(
            "Timelog upserts and deletes from MobiClocks core (TimelogUpserted | TimelogDeleted, JSON), consumed"
            " in batches: stored, then the entries they touch recomputed in one transaction per batch."
        ),
    )
    async def on_timelogs_changed(bodies: list[bytes], message: KafkaMessage) -> None:
        with span_per_record(tracer, "aggregate timelog", message.raw_message):
            await handlers.apply_timelog_records(pool(), message.raw_message, dead_letters)

    @broker.subscriber(
        topics.reference,
        topics.mapping_changes,
        topics.publish_commands,
        topics.publish_results,
        **{**options, "group_id": f"{options['group_id']}.control"},
        description="Reference names, setup and mapping changes, publish commands and publish results.",
    )
    async def on_control_event(event: AggregatorInput) -> None:
        # Nothing here catches: a transient error (the database away) propagates and the consumer retries.
        async with pool().acquire() as conn, conn.transaction():
            if isinstance(event, ReferenceUpserted | ReferenceDeleted):
                await handlers.apply_reference_event(conn, event)
            elif isinstance(event, SetupChanged | MappingChanged):
                await handlers.apply_mapping_change(conn, event)
            elif isinstance(event, PublishEntries):
                await handlers.publish_entries(conn, event, topics, redrive)
            else:
                await handlers.apply_publish_result(conn, event)
        if isinstance(event, PublishEntries):
            state["relay"].notify()

    async def redrive_overdue_publishes() -> int:
        async with pool().acquire() as conn, conn.transaction():
            sent = await handlers.redrive_stalled_publishes(conn, topics, redrive)
        if sent:
            state["relay"].notify()
        return sent

    # Declared so the AsyncAPI document shows what the outbox relay sends.
    broker.publisher(topics.publish_requests, description="Publish requests for the publisher (via the outbox).")

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        dsn = settings.database_url.get_secret_value()
        instrument_asyncpg(provider)
        await ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_topic_partitions)
        await db.migrate(dsn, settings.db_schema, "services.aggregator.migrations")
        state["pool"] = await db.create_pool(dsn, settings.db_schema)
        relay = OutboxRelay(
            state["pool"], publish_raw, settings.db_schema, settings.outbox_batch_size, settings.outbox_poll_interval_s
        )
        state["relay"] = relay
        relay.start()
        sweeper = PublishSweeper(redrive_overdue_publishes, redrive.batch, settings.publish_sweep_interval_s)
        state["sweeper"] = sweeper
        sweeper.start()
        try:
            yield
        finally:
            await sweeper.stop()
            await relay.stop()
            await state["pool"].close()
            provider.force_flush()

    return make_service_app(
        broker,
        title="MobiClocks Procore aggregator",
        description="Turns timelogs into manpower, timecard and production-quantity entries and owns their status.",
        check=health_checks(broker, lambda: state.get("pool")),
        lifespan=lifespan,
        components={"outbox relay": lambda: state.get("relay"), "publish sweeper": lambda: state.get("sweeper")},
    )
