"""The one place that wires the mapping service: settings → broker, pool, subscribers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from faststream.asgi import AsgiFastStream
from opentelemetry.sdk.trace import TracerProvider
from pydantic import Field

from services.mapping import handlers
from services.mapping.config import MappingSettings
from shared import db
from shared.app import health_checks, make_service_app
from shared.broker import consumer_options, ensure_topics, make_broker
from shared.events import ConfigureSetup, ReferenceDeleted, ReferenceUpserted, SetMapping
from shared.telemetry import instrument_asyncpg, make_tracer_provider

SERVICE = "mapping"

MappingInput = Annotated[
    ConfigureSetup | SetMapping | ReferenceUpserted | ReferenceDeleted, Field(discriminator="type")
]


def build_app(settings: MappingSettings, tracer_provider: TracerProvider | None = None) -> AsgiFastStream:
    provider = tracer_provider or make_tracer_provider(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    topics = settings.topics
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider)
    state: dict[str, Any] = {}
    to_mapping_changes = broker.publisher(
        topics.mapping_changes, description="Setup and mapping changes; the aggregator re-validates entries."
    )

    @broker.subscriber(
        topics.mapping_commands,
        topics.reference,
        **consumer_options(SERVICE, settings.kafka_session_timeout_ms),
        description="Setup and mapping commands from the gateway; reference entities from MobiClocks core.",
    )
    async def on_mapping_input(event: MappingInput) -> None:
        pool: asyncpg.Pool = state["pool"]
        async with pool.acquire() as conn, conn.transaction():
            if isinstance(event, ConfigureSetup):
                changes = await handlers.configure_setup(conn, event)
            elif isinstance(event, SetMapping):
                changes = await handlers.set_mapping(conn, event)
            else:
                changes = await handlers.apply_reference_event(conn, event)
        for change in changes:
            await to_mapping_changes.publish(change, key=change.account_id.encode())

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        dsn = settings.database_url.get_secret_value()
        instrument_asyncpg(provider)
        await ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_topic_partitions)
        await db.migrate(dsn, settings.db_schema, "services.mapping.migrations")
        state["pool"] = await db.create_pool(dsn, settings.db_schema)
        try:
            yield
        finally:
            await state["pool"].close()
            provider.force_flush()

    return make_service_app(
        broker,
        title="MobiClocks Procore mapping",
        description="Owns setup, Procore entity sync and the mapping of MobiClocks entities to Procore.",
        check=health_checks(broker, lambda: state.get("pool")),
        lifespan=lifespan,
    )
