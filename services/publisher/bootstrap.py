"""The one place that wires the publisher: settings → broker, pool, Procore client, workers, subscriber."""

from __future__ import annotations

import asyncio
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
from services.publisher.adapters.attempts import AttemptLog, Pending, Unemitted
from services.publisher.adapters.procore import ProcoreRecords
from services.publisher.config import PublisherSettings
from services.publisher.domain import RESOURCES
from services.publisher.workers import CompanyWorkers, single_active
from shared import db
from shared.app import health_checks, make_service_app
from shared.broker import DeadLetters, consumer_options, ensure_topics, make_broker, raw_bodies
from shared.events import ProcorePublishFinished, PublishToProcore
from shared.procore import ConnectionTokens, ProcoreClient, RateLimiter, TokenProvider, TokenSource
from shared.telemetry import instrument_asyncpg, make_tracer_provider, span_per_record

SERVICE = "publisher"
LEFTOVER_SWEEP_S = 30.0

log = logging.getLogger(__name__)


def token_providers(settings: PublisherSettings, http: httpx.AsyncClient) -> Callable[[str], TokenProvider]:
    """account id → its tokens: the account's own Procore connection (via mapping), else the app's service account."""
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
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider)
    state: dict[str, Any] = {}
    to_results = broker.publisher(
        topics.publish_results,
        description="One result per publish request: published, deleted, conflict, failed.",
    )

    async def emit(result: ProcorePublishFinished) -> None:
        await to_results.publish(result, key=f"{result.account_id}:{result.entry_id}".encode())

    dead_letters = DeadLetters(broker, SERVICE, topics)

    async def answer_again(result: ProcorePublishFinished, trace: dict[str, str]) -> None:
        with tracer.start_as_current_span("answer publish request again", context=propagate.extract(trace)):
            await emit(result)

    @broker.subscriber(
        topics.publish_requests,
        **consumer_options(SERVICE, settings.kafka_session_timeout_ms, topics.prefix),
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        decoder=raw_bodies,
        description=(
            "Publish requests from the aggregator (PublishToProcore, JSON), in batches: each stored once in the"
            " attempt log, then sent to Procore by the worker of its company."
        ),
    )
    async def on_publish_requests(bodies: list[bytes], message: KafkaMessage) -> None:
        # Named like FastStream's own consumer span: one per request, in the request's trace.
        with span_per_record(tracer, f"{topics.publish_requests} process", message.raw_message):
            await handlers.accept_records(
                message.raw_message, state["attempts"], state["workers"].wake, answer_again, dead_letters
            )

    def records_for(request: PublishToProcore) -> ProcoreRecords:
        client: ProcoreClient = state["procore"].with_tokens(state["tokens_for"](request.account_id))
        return ProcoreRecords(
            client,
            RESOURCES[request.module],
            request.procore_company_id,
            request.procore_project_id,
            max_attempts=settings.procore_max_attempts,
            patience_s=settings.procore_rate_limit_patience_s,
        )

    async def process(pending: Pending) -> None:
        request = pending.request
        attributes: dict[str, str | int] = {
            "procore.company_id": request.procore_company_id,
            "publish.request_id": str(request.request_id),
        }
        with tracer.start_as_current_span(
            "publish to Procore", context=propagate.extract(pending.trace), attributes=attributes
        ):
            await handlers.process_request(
                pending, state["attempts"], records_for, emit, max_tries=settings.publisher_max_tries
            )

    async def emit_stored(item: Unemitted) -> None:
        with tracer.start_as_current_span("emit stored result", context=propagate.extract(item.trace)):
            await emit(ProcorePublishFinished.model_validate(item.result))

    async def lead() -> None:
        """Wait to be the one active publisher, then work, and re-emit results a stop left behind."""
        lock = f"publisher:{settings.db_schema}"
        while True:
            try:
                async with single_active(settings.database_url.get_secret_value(), lock) as conn:
                    await state["workers"].start()
                    try:
                        older_than = 0.0
                        while True:
                            await conn.fetchval("SELECT 1")  # still holding the lock?
                            await handlers.emit_leftovers(state["attempts"], emit_stored, older_than)
                            older_than = LEFTOVER_SWEEP_S
                            await asyncio.sleep(LEFTOVER_SWEEP_S)
                    finally:
                        await state["workers"].stop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publisher lost its database session; starting over")
                await asyncio.sleep(2.0)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        dsn = settings.database_url.get_secret_value()
        instrument_asyncpg(provider)
        await ensure_topics(settings.kafka_bootstrap_servers, topics.all(), settings.kafka_topic_partitions)
        await db.migrate(dsn, settings.db_schema, "services.publisher.migrations")
        pool: asyncpg.Pool = await db.create_pool(dsn, settings.db_schema, max_size=20)
        state["pool"] = pool
        active = settings.publisher_max_active_companies
        http = httpx.AsyncClient(
            timeout=settings.procore_timeout_s,
            limits=httpx.Limits(max_connections=active + 8, max_keepalive_connections=active + 8),
        )
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=provider)
        state["tokens_for"] = token_providers(settings, http)
        limiter = RateLimiter()
        # One try per client call: the publisher decides what is safe to send again (see adapters.procore).
        state["procore"] = ProcoreClient(
            http, settings.procore_base_url, state["tokens_for"]("*"), limiter, max_attempts=1
        )
        attempts = AttemptLog(pool)
        state["attempts"] = attempts
        state["workers"] = CompanyWorkers(
            attempts.next_pending, attempts.pending_companies, process, limiter.ready, max_active=active
        )
        try:
            yield
        finally:
            await http.aclose()
            await pool.close()
            provider.force_flush()

    app = make_service_app(
        broker,
        title="MobiClocks Procore publisher",
        description="Sends entries to Procore: one record per entry, within Procore's rate limits.",
        check=health_checks(broker, lambda: state.get("pool")),
        lifespan=lifespan,
    )

    @app.after_startup
    async def start_working() -> None:
        state["leader"] = asyncio.create_task(lead(), name="publisher-lead")

    @app.on_shutdown
    async def stop_working() -> None:
        leader: asyncio.Task[None] | None = state.pop("leader", None)
        if leader is not None:
            leader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leader
        await state["workers"].stop()

    return app
