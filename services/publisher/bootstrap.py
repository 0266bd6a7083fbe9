"""The one place that wires the publisher: settings → broker, pool, Procore client, leases, workers, outbox relay."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from faststream.asgi import AsgiFastStream
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import propagate
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from services.publisher import handlers
from services.publisher.adapters.attempts import AttemptLog, Pending
from services.publisher.adapters.leases import LeaseStore
from services.publisher.adapters.procore import ProcoreRecords
from services.publisher.config import PublisherSettings
from services.publisher.domain import RESOURCES, Lease
from services.publisher.leasing import LeaseKeeper
from services.publisher.workers import CompanyWorkers
from shared import db
from shared.app import health_checks, make_service_app
from shared.broker import DeadLetters, consumer_options, ensure_topics, make_broker, raw_bodies
from shared.events import PublishToProcore
from shared.outbox import OutboxRelay
from shared.procore import ConnectionTokens, ProcoreClient, RateLimiter, TokenProvider, TokenSource, budget_key
from shared.telemetry import instrument_asyncpg, make_tracer_provider, span_per_record

SERVICE = "publisher"

log = logging.getLogger(__name__)


def token_providers(settings: PublisherSettings, http: httpx.AsyncClient) -> Callable[[str], TokenProvider]:
    """account id → its tokens: the account's own Procore connection (via mapping's internal API, naming the company
    of every call: one not bound to the account fails for good), else the app's service account."""
    if settings.procore_tokens_url:
        connections = ConnectionTokens(
            http, settings.procore_tokens_url, settings.internal_api_token.get_secret_value()
        )
        return connections.provider
    app_tokens = TokenSource(
        http, settings.login_url, settings.procore_client_id, settings.procore_client_secret.get_secret_value()
    )

    async def token_for(company_id: int, force_refresh: bool) -> str:
        return await app_tokens.get(force_refresh)

    return lambda account_id: token_for


def build_app(settings: PublisherSettings, tracer_provider: TracerProvider | None = None) -> AsgiFastStream:
    provider = tracer_provider or make_tracer_provider(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    tracer = provider.get_tracer("services.publisher")
    topics = settings.topics
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider, consumer=settings)
    state: dict[str, Any] = {}
    # Declared so the AsyncAPI document shows what the outbox relay sends.
    broker.publisher(
        topics.publish_results,
        description="One result per publish request (published, deleted, conflict, failed), via the outbox.",
    )

    async def publish_raw(body: bytes, topic: str, key: str, headers: dict[str, str]) -> None:
        await broker.publish(body, topic=topic, key=key.encode(), headers=headers)

    dead_letters = DeadLetters(broker, SERVICE, topics)

    @broker.subscriber(
        topics.publish_requests,
        **consumer_options(SERVICE, settings.kafka_session_timeout_ms, topics.prefix),
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        decoder=raw_bodies,
        description=(
            "Publish requests from the aggregator (PublishToProcore, JSON), in batches: each stored once in the"
            " attempt log, then sent to Procore by the instance holding its company's lease."
        ),
    )
    async def on_publish_requests(bodies: list[bytes], message: KafkaMessage) -> None:
        # Named like FastStream's own consumer span: one per request, in the request's trace.
        with span_per_record(tracer, f"{topics.publish_requests} process", message.raw_message):
            again = await handlers.accept_records(
                message.raw_message, state["attempts"], state["workers"].wake, dead_letters
            )
        if again:
            state["relay"].notify()

    def records_for(request: PublishToProcore, lease: Lease) -> ProcoreRecords:
        client: ProcoreClient = state["procore"].with_tokens(state["tokens_for"](request.account_id))
        return ProcoreRecords(
            client,
            RESOURCES[request.module],
            request.procore_company_id,
            request.procore_project_id,
            max_attempts=settings.procore_max_attempts,
            patience_s=settings.procore_rate_limit_patience_s,
            guard=lease.check,
        )

    async def process(pending: Pending, lease: Lease) -> None:
        request = pending.request
        attributes: dict[str, str | int] = {
            "procore.company_id": request.procore_company_id,
            "publish.request_id": str(request.request_id),
            "publisher.lease_token": lease.token,
        }
        with tracer.start_as_current_span(
            "publish to Procore", context=propagate.extract(pending.trace), attributes=attributes
        ):
            await handlers.process_request(
                pending, lease, state["attempts"], records_for, max_tries=settings.publisher_max_tries
            )
        state["relay"].notify()

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        dsn = settings.database_url.get_secret_value()
        instrument_asyncpg(provider)
        await ensure_topics(
            settings.kafka_bootstrap_servers, topics.all(), settings.kafka_topic_partitions, connection=settings
        )
        await db.migrate(dsn, settings.db_schema, "services.publisher.migrations")
        pool: asyncpg.Pool = await db.create_pool(dsn, settings.db_schema, max_size=20)
        state["pool"] = pool
        active = settings.publisher_max_active_companies
        http = httpx.AsyncClient(
            timeout=settings.procore_timeout_s,
            limits=httpx.Limits(max_connections=active + 8, max_keepalive_connections=active + 8),
            # which instance made a call shows in Procore's (and the sandbox's) request logs
            headers={"User-Agent": f"mobiclocks-procore-publisher ({settings.publisher_instance_id})"},
        )
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=provider)
        state["tokens_for"] = token_providers(settings, http)
        limiter = RateLimiter()
        # One try per client call: the publisher decides what is safe to send again (see adapters.procore).
        state["procore"] = ProcoreClient(
            http, settings.procore_base_url, state["tokens_for"]("*"), limiter, max_attempts=1
        )
        attempts = AttemptLog(pool, topics.publish_results)
        state["attempts"] = attempts
        relay = OutboxRelay(
            pool, publish_raw, settings.db_schema, settings.outbox_batch_size, settings.outbox_poll_interval_s
        )
        state["relay"] = relay
        ttl = settings.publisher_lease_ttl_s
        store = LeaseStore(pool, settings.publisher_instance_id, ttl, settings.publisher_takeover_grace_s)
        keeper = LeaseKeeper(store, limiter, ttl, settings.publisher_lease_margin_s)

        async def ready(company_id: int) -> None:
            await limiter.ready(budget_key(company_id))

        state["workers"] = CompanyWorkers(
            keeper,
            attempts.next_pending,
            process,
            ready,
            renew_interval_s=ttl / 3,
            takeover_grace_s=settings.publisher_takeover_grace_s,
            max_active=active,
            retry_base_s=settings.publisher_retry_base_s,
            retry_max_s=settings.publisher_retry_max_s,
        )
        state["store"] = store
        relay.start()
        try:
            yield
        finally:
            await relay.stop()
            await http.aclose()
            await pool.close()
            provider.force_flush()

    base_checks = health_checks(broker, lambda: state.get("pool"))

    async def check() -> dict[str, bool]:
        """Not ready while results cannot be sent, leases cannot be renewed or some company waits for a dependency."""
        checks = await base_checks()
        workers: CompanyWorkers | None = state.get("workers")
        relay: OutboxRelay | None = state.get("relay")
        checks["outbox"] = relay is not None and relay.healthy
        checks["leases"] = workers is not None and workers.leases_healthy
        checks["publishing"] = workers is not None and not workers.paused
        return checks

    app = make_service_app(
        broker,
        title="MobiClocks Procore publisher",
        description="Sends entries to Procore: one record per entry, within Procore's rate limits.",
        check=check,
        lifespan=lifespan,
    )

    @app.after_startup
    async def start_working() -> None:
        queued = await state["attempts"].queue_unemitted()
        if queued:
            log.info("queued %d results an earlier version stored but never sent", queued)
            state["relay"].notify()
        await state["workers"].start()

    @app.on_shutdown
    async def stop_working() -> None:
        await state["workers"].stop()
        with contextlib.suppress(Exception):  # the database may be away: the heartbeat expires by itself
            await state["store"].leave()

    return app
