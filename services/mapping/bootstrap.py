"""The one place that wires the mapping service: settings → broker, pool, Procore client, subscribers, routes,
outbox relay, and the internal API on its own port."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from faststream.asgi import AsgiFastStream
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from pydantic import Field

from services.mapping import handlers
from services.mapping.adapters import internal_api
from services.mapping.adapters.connections import TokenCipher
from services.mapping.config import MappingSettings
from services.mapping.connection import ConnectionDeps
from shared import db
from shared.app import health_checks, make_service_app
from shared.broker import consumer_options, ensure_topics, make_broker
from shared.events import (
    AutoMap,
    CompleteProcoreConnection,
    ConfigureSetup,
    DisconnectProcore,
    ReferenceDeleted,
    ReferenceUpserted,
    SetMapping,
    SyncProcoreEntities,
    UnbindProcoreCompany,
)
from shared.outbox import OutboxRelay
from shared.procore import OAuthApp, ProcoreClient
from shared.telemetry import instrument_asyncpg, make_tracer_provider

SERVICE = "mapping"

log = logging.getLogger(__name__)

MappingInput = Annotated[
    ConfigureSetup
    | SetMapping
    | CompleteProcoreConnection
    | DisconnectProcore
    | UnbindProcoreCompany
    | SyncProcoreEntities
    | AutoMap
    | ReferenceUpserted
    | ReferenceDeleted,
    Field(discriminator="type"),
]


async def _no_token(company_id: int, force_refresh: bool) -> str:
    raise RuntimeError("use connection.client_for(account, company) for Procore calls: tokens belong to a connection")


def build_app(settings: MappingSettings, tracer_provider: TracerProvider | None = None) -> AsgiFastStream:
    provider = tracer_provider or make_tracer_provider(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    topics = settings.topics
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider, consumer=settings)
    state: dict[str, Any] = {}
    # Sent by the outbox relay (written with the change that causes it); declared for the AsyncAPI document.
    broker.publisher(
        topics.mapping_changes,
        description="Setup changes (modules, two-way, company, connection) and mapping changes (set, cleared, "
        "broken); the aggregator re-validates entries.",
    )
    broker.publisher(
        topics.mapping_commands,
        description="procore.complete_connection to itself, once a new connection's tokens are stored (obtained over "
        "the internal HTTP API: no code or secret in it): prove and bind the companies it reaches.",
    )

    async def publish_raw(body: bytes, topic: str, key: str, headers: dict[str, str]) -> None:
        await broker.publish(body, topic=topic, key=key.encode(), headers=headers)

    def deps() -> ConnectionDeps:
        found: ConnectionDeps = state["deps"]
        return found

    @broker.subscriber(
        topics.mapping_commands,
        topics.reference,
        **consumer_options(SERVICE, settings.kafka_session_timeout_ms, topics.prefix),
        description="Setup, connection, sync, auto-map and mapping commands from the gateway (checked against "
        "the requester's permissions here); reference entities from MobiClocks core.",
    )
    async def on_mapping_input(event: MappingInput) -> None:
        if isinstance(event, ReferenceUpserted | ReferenceDeleted):
            await handlers.apply_reference_event(deps(), event)
        else:
            await handlers.handle_command(deps(), event)
        state["relay"].notify()

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        dsn = settings.database_url.get_secret_value()
        cipher = TokenCipher(settings.encryption_keys)
        instrument_asyncpg(provider)
        await ensure_topics(
            settings.kafka_bootstrap_servers, topics.all(), settings.kafka_topic_partitions, connection=settings
        )
        await db.migrate(dsn, settings.db_schema, "services.mapping.migrations")
        pool = await db.create_pool(dsn, settings.db_schema)
        state["pool"] = pool
        http = httpx.AsyncClient(
            timeout=settings.procore_timeout_s,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=provider)
        oauth = OAuthApp(
            http, settings.login_url, settings.procore_client_id, settings.procore_client_secret.get_secret_value()
        )
        procore = ProcoreClient(http, settings.procore_base_url, _no_token, max_attempts=settings.procore_max_attempts)
        relay = OutboxRelay(
            pool, publish_raw, settings.db_schema, settings.outbox_batch_size, settings.outbox_poll_interval_s
        )
        state["relay"] = relay
        state["deps"] = ConnectionDeps(
            pool,
            cipher,
            oauth,
            procore,
            topics.mapping_changes,
            relay.notify,
            settings.token_refresh_margin_s,
            commands_topic=topics.mapping_commands,
            pkce=settings.procore_oauth_pkce,
            state_ttl_s=settings.oauth_state_ttl_s,
        )
        relay.start()
        internal = await _start_internal_api(settings, lambda: state.get("deps"))
        try:
            yield
        finally:
            if internal is not None:
                await internal.stop()
            state.pop("deps", None)
            await relay.stop()
            await http.aclose()
            await pool.close()
            provider.force_flush()

    app = make_service_app(
        broker,
        title="MobiClocks Procore mapping",
        description="Owns setup, the Procore connection (its OAuth tokens), Procore entity sync, auto-map and "
        "the mapping of MobiClocks entities to Procore.",
        check=health_checks(broker, lambda: state.get("pool")),
        lifespan=lifespan,
        components={"outbox relay": lambda: state.get("relay")},  # not ready while changes cannot be sent
    )
    return app


async def _start_internal_api(
    settings: MappingSettings, deps: Callable[[], ConnectionDeps | None]
) -> internal_api.InternalServer | None:
    """The token endpoint and the connection routes, on INTERNAL_HTTP_PORT only (never on the public port)."""
    token = settings.internal_api_token.get_secret_value()
    if not token:
        log.warning("INTERNAL_API_TOKEN is not set: the internal API (tokens for the publisher, connecting) is off")
        return None
    server = internal_api.InternalServer(
        internal_api.app(deps, token), settings.internal_http_host, settings.internal_http_port, settings.log_level
    )
    await server.start()
    return server
