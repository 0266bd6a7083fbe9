"""The one place that wires the mapping service: settings → broker, pool, Procore client, subscribers, routes,
outbox relay, and the internal API on its own port."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
import httpx
from faststream.asgi import AsgiFastStream
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from services.mapping import entrypoint, handlers, mapping_handlers, reference_events
from services.mapping.adapters import internal_api, procore_links
from services.mapping.adapters.procore_links import TokenCipher
from services.mapping.adapters.sync_jobs import ClaimedJob, SyncJobStore
from services.mapping.config import MappingSettings
from services.mapping.deps import MappingDeps
from services.mapping.sync_jobs import Progress, SyncJobRunner
from services.mapping.webhooks import WebhookKeeper, WebhookSettings
from shared import db, metrics
from shared.app import health_checks, make_service_app
from shared.broker import consumer_options, ensure_topics, make_broker
from shared.events import ReferenceDeleted, ReferenceUpserted
from shared.outbox import OutboxRelay
from shared.procore import OAuthApp, ProcoreClient
from shared.telemetry import instrument_asyncpg, make_tracer_provider

SERVICE = "mapping"

log = logging.getLogger(__name__)

C = TypeVar("C", bound=handlers.Command)


async def _no_token(company_id: int, force_refresh: bool) -> str:
    raise RuntimeError("use connection.client_for(account, company) for Procore calls: tokens belong to a connection")


def build_app(settings: MappingSettings, tracer_provider: TracerProvider | None = None) -> AsgiFastStream:
    provider = tracer_provider or make_tracer_provider(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    topics = settings.topics
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider, consumer=settings)
    metrics.count_token_refreshes()

    async def count_reauthorizations() -> None:
        pool = resources.pool
        if pool is None:
            return
        async with pool.acquire() as conn:
            counts = await procore_links.count_needing_reauthorization(conn)
        for grant_type in metrics.GRANT_TYPES:
            metrics.NEEDS_REAUTHORIZATION.labels(grant_type).set(counts.get(grant_type, 0))

    metrics.on_scrape(broker, count_reauthorizations)
    resources = _Resources()
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

    def running() -> Running:
        if resources.running is None:
            raise RuntimeError("the mapping service is not started")  # a message before the lifespan began
        return resources.running

    broker.include_router(
        entrypoint.router(topics, consumer_options(SERVICE, settings.kafka_session_timeout_ms, topics.prefix), running)
    )

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
        resources.pool = pool
        http = httpx.AsyncClient(
            timeout=settings.procore_timeout_s,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            event_hooks=metrics.http_client_hooks(),
        )
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=provider)
        oauth = OAuthApp(
            http,
            settings.login_url,
            settings.procore_client_id,
            settings.procore_client_secret.get_secret_value(),
            browser_login_url=settings.procore_browser_login_url,
        )
        procore = ProcoreClient(http, settings.procore_base_url, _no_token, max_attempts=settings.procore_max_attempts)
        relay = OutboxRelay(
            pool, publish_raw, settings.db_schema, settings.outbox_batch_size, settings.outbox_poll_interval_s
        )
        deps = MappingDeps(
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
        jobs = SyncJobStore(pool, settings.mapping_instance_id, settings.sync_job_lease_s)

        async def run_job(job: ClaimedJob, progress: Progress, store: SyncJobStore) -> None:
            await mapping_handlers.run_sync_job(deps, job, progress, store.owner)

        runner = SyncJobRunner(
            jobs,
            run_job,
            max_jobs=settings.sync_jobs_max_running,
            report_interval_s=settings.sync_job_lease_s / 5,
            retry_max_s=settings.sync_job_retry_max_s,
        )
        keeper = WebhookKeeper(
            resources.deps,
            WebhookSettings(
                settings.webhook_destination_url,
                settings.webhook_keeper_interval_s,
                settings.webhook_reconcile_interval_s,
                settings.webhook_reconcile_days,
            ),
        )
        resources.running = Running(deps, relay, runner, keeper)
        relay.start()
        runner.start()
        keeper.start()
        internal = await _start_internal_api(settings, resources.deps)
        try:
            yield
        finally:
            if internal is not None:
                await internal.stop()
            await runner.stop()
            await keeper.stop()
            resources.running = None
            await relay.stop()
            await http.aclose()
            await pool.close()
            provider.force_flush()

    app = make_service_app(
        broker,
        title="MobiClocks Procore mapping",
        description="Owns setup, the Procore connection (its OAuth tokens), Procore entity sync, auto-map and "
        "the mapping of MobiClocks entities to Procore.",
        check=health_checks(broker, lambda: resources.pool),
        lifespan=lifespan,
        # not ready while changes cannot be sent, or sync jobs can be neither claimed nor reported
        components={
            "outbox relay": lambda: resources.running.relay if resources.running else None,
            "sync jobs": lambda: resources.running.sync_jobs if resources.running else None,
        },
    )
    return app


@dataclass(frozen=True)
class Running:
    """The resources of the started app (built in the lifespan, never at import time); what the subscribers use."""

    deps: MappingDeps
    relay: OutboxRelay
    sync_jobs: SyncJobRunner
    webhooks: WebhookKeeper

    async def command(self, cmd: C, use_case: handlers.UseCase[C]) -> None:
        await handlers.handle_command(self.deps, cmd, use_case)

    async def reference(self, event: ReferenceUpserted | ReferenceDeleted) -> None:
        await reference_events.apply_reference_event(self.deps.stores, event)

    def wake_sync_jobs(self) -> None:
        self.sync_jobs.wake()

    def wake_webhooks(self) -> None:
        self.webhooks.wake()

    def notify_relay(self) -> None:
        self.relay.notify()


class _Resources:
    """What the started app holds, for the subscribers, probes and metrics that outlive a lifespan."""

    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.running: Running | None = None

    def deps(self) -> MappingDeps | None:
        return self.running.deps if self.running is not None else None


async def _start_internal_api(
    settings: MappingSettings, deps: Callable[[], MappingDeps | None]
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
