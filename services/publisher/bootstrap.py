"""The one place that wires the publisher: settings → broker, pool, Procore client, subscriber."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from faststream.asgi import AsgiFastStream
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from services.publisher import handlers
from services.publisher.adapters.attempts import AttemptLog
from services.publisher.config import PublisherSettings
from shared import db
from shared.app import health_checks, make_service_app
from shared.broker import consumer_options, ensure_topics, make_broker
from shared.events import ProcorePublishFinished, PublishRequest
from shared.procore import ProcoreClient, TokenSource
from shared.telemetry import instrument_asyncpg, make_tracer_provider

SERVICE = "publisher"


def build_app(settings: PublisherSettings, tracer_provider: TracerProvider | None = None) -> AsgiFastStream:
    provider = tracer_provider or make_tracer_provider(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    topics = settings.topics
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider)
    state: dict[str, Any] = {}
    to_results = broker.publisher(
        topics.publish_results,
        description="One result per publish request: published, deleted, conflict, failed.",
    )

    @broker.subscriber(
        topics.publish_requests,
        **consumer_options(SERVICE, settings.kafka_session_timeout_ms),
        description="Publish requests from the aggregator: create, update, delete or replace a Procore record.",
    )
    async def on_publish_request(request: PublishRequest) -> None:
        result: ProcorePublishFinished = await handlers.handle_publish_request(
            request, state["attempts"], state["procore"]
        )
        await to_results.publish(result, key=f"{result.account_id}:{result.entry_id}".encode())

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        dsn = settings.database_url.get_secret_value()
        instrument_asyncpg(provider)
        await ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_topic_partitions)
        await db.migrate(dsn, settings.db_schema, "services.publisher.migrations")
        pool: asyncpg.Pool = await db.create_pool(dsn, settings.db_schema)
        state["pool"] = pool
        http = httpx.AsyncClient(
            timeout=settings.procore_timeout_s,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=provider)
        tokens = TokenSource(
            http,
            settings.login_url,
            settings.procore_client_id,
            settings.procore_client_secret.get_secret_value(),
        )

        async def token_for(company_id: int, force_refresh: bool) -> str:
            return await tokens.get(force_refresh)

        state["procore"] = ProcoreClient(
            http, settings.procore_base_url, token_for, max_attempts=settings.procore_max_attempts
        )
        state["attempts"] = AttemptLog(pool)
        try:
            yield
        finally:
            await http.aclose()
            await pool.close()
            provider.force_flush()

    return make_service_app(
        broker,
        title="MobiClocks Procore publisher",
        description="Sends entries to Procore: one record per entry, within Procore's rate limits.",
        check=health_checks(broker, lambda: state.get("pool")),
        lifespan=lifespan,
    )
