"""The one place that wires the publisher: settings → broker, pool, Procore client, leases, workers, outbox relay."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import httpx
from faststream.asgi import AsgiFastStream
from opentelemetry import propagate
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from services.publisher import domain, entrypoint, handlers
from services.publisher.adapters.attempts import AttemptLog, Pending
from services.publisher.adapters.leases import LeaseStore
from services.publisher.adapters.procore import ProcoreRecords
from services.publisher.adapters.token_budgets import SharedTokenLimiter, TokenBudgetStore
from services.publisher.budgets import TokenBudgets
from services.publisher.config import PublisherSettings
from services.publisher.domain import RESOURCES
from services.publisher.lease import Lease
from services.publisher.leasing import LeaseKeeper
from services.publisher.workers import CompanyWorkers
from shared import db, metrics
from shared.app import health_checks, make_service_app
from shared.broker import DeadLetters, consumer_options, ensure_topics, make_broker
from shared.events import PublishToProcore
from shared.outbox import OutboxRelay
from shared.procore import ConnectionTokens, ProcoreClient, RateLimiter, TokenProvider, TokenSource
from shared.telemetry import instrument_asyncpg, make_tracer_provider

SERVICE = "publisher"

log = logging.getLogger(__name__)


@dataclass
class Running:
    """What the lifespan starts, None until it has: the subscriber, the workers and the health check reach it
    through this (every part is started before the first message is consumed)."""

    pool: asyncpg.Pool | None = None
    lease_pool: asyncpg.Pool | None = None
    tokens_for: Callable[[str], TokenProvider] | None = None
    budgets: TokenBudgets | None = None
    procore: ProcoreClient | None = None
    attempt_log: AttemptLog | None = None
    relay: OutboxRelay | None = None
    workers: CompanyWorkers | None = None
    store: LeaseStore | None = None
    start_stop_projects: set[int] = field(default_factory=set)
    """Projects Procore answered "start/stop times" for: their timecards go with time_in/time_out."""
    bulk_refused: set[int] = field(default_factory=set)
    """Companies whose bulk_create was refused: their timecards go one at a time."""

    @property
    def attempts(self) -> AttemptLog:
        assert self.attempt_log is not None, "started by the lifespan before any consumer runs"
        return self.attempt_log

    def wake_worker(self, company_id: int) -> None:
        assert self.workers is not None, "started by the lifespan before any consumer runs"
        self.workers.wake(company_id)

    def wake_relay(self) -> None:
        assert self.relay is not None, "started by the lifespan before any consumer runs"
        self.relay.notify()

    def client_for(self, account_id: str, company_id: int) -> ProcoreClient:
        """A Procore client with the account's tokens, paced by the budget of the token it uses."""
        assert self.procore is not None, "started by the lifespan before any consumer runs"
        assert self.budgets is not None, "started by the lifespan before any consumer runs"
        assert self.tokens_for is not None, "started by the lifespan before any consumer runs"
        # Procore counts calls per token: every company reached through this account's connection spends its budget
        budget = self.budgets.learn(company_id, account_id)
        return self.procore.with_tokens(self.tokens_for(account_id), budget)


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


def build_app(settings: PublisherSettings, tracer_provider: TracerProvider | None = None) -> AsgiFastStream:  # noqa: C901 - wiring only: one branch per optional part (token budgets, token provider, tracing)
    provider = tracer_provider or make_tracer_provider(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    tracer = provider.get_tracer("services.publisher")
    topics = settings.topics
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider, consumer=settings)
    running = Running()
    # Declared so the AsyncAPI document shows what the outbox relay sends.
    broker.publisher(
        topics.publish_results,
        description="One result per publish request (published, deleted, conflict, failed), via the outbox.",
    )

    async def publish_raw(body: bytes, topic: str, key: str, headers: dict[str, str]) -> None:
        await broker.publish(body, topic=topic, key=key.encode(), headers=headers)

    broker.include_router(
        entrypoint.router(
            topics,
            consumer_options(SERVICE, settings.kafka_session_timeout_ms, topics.prefix),
            (settings.batch_max_records, settings.batch_timeout_ms),
            tracer,
            DeadLetters(broker, SERVICE, topics),
            lambda: running,
        )
    )

    def records_for(request: PublishToProcore, lease: Lease) -> ProcoreRecords:
        return ProcoreRecords(
            running.client_for(request.account_id, request.procore_company_id),
            RESOURCES[request.module],
            request.procore_company_id,
            request.procore_project_id,
            max_attempts=settings.procore_max_attempts,
            patience_s=settings.procore_rate_limit_patience_s,
            guard=lease.check,
            start_stop_projects=running.start_stop_projects,
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
            result = await handlers.process_request(
                pending, lease, running.attempts, records_for, max_tries=settings.publisher_max_tries
            )
        metrics.publish_finished(result.module, result.outcome, request.occurred_at)
        running.wake_relay()

    async def process_run(run: list[Pending], lease: Lease) -> None:
        """Timecard creates sent with one bulk_create call (one span; each result in its request's own trace)."""
        attributes: dict[str, str | int] = {
            "procore.company_id": lease.company_id,
            "publish.requests": len(run),
            "publisher.lease_token": lease.token,
        }
        with tracer.start_as_current_span(
            "bulk publish to Procore", context=propagate.extract(run[0].trace), attributes=attributes
        ):
            results = await handlers.process_bulk(
                run,
                lease,
                running.attempts,
                records_for,
                max_tries=settings.publisher_max_tries,
                bulk_refused=running.bulk_refused,
            )
        sent_at = {p.request.request_id: p.request.occurred_at for p in run}
        for result in results:
            metrics.publish_finished(result.module, result.outcome, sent_at[result.request_id])
        running.wake_relay()

    def runs(batch: list[Pending], hold_partial: bool) -> list[list[int]]:
        return domain.bulk_groups([p.request for p in batch], hold_partial=hold_partial)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        dsn = settings.database_url.get_secret_value()
        instrument_asyncpg(provider)
        await ensure_topics(
            settings.kafka_bootstrap_servers, topics.all(), settings.kafka_topic_partitions, connection=settings
        )
        await db.migrate(dsn, settings.db_schema, "services.publisher.migrations")
        pool: asyncpg.Pool = await db.create_pool(dsn, settings.db_schema, max_size=20)
        running.pool = pool
        active = settings.publisher_max_active_companies
        http = httpx.AsyncClient(
            timeout=settings.procore_timeout_s,
            limits=httpx.Limits(max_connections=active + 8, max_keepalive_connections=active + 8),
            # which instance made a call shows in Procore's (and the sandbox's) request logs
            headers={"User-Agent": f"mobiclocks-procore-publisher ({settings.publisher_instance_id})"},
            event_hooks=metrics.http_client_hooks(),
        )
        HTTPXClientInstrumentor.instrument_client(http, tracer_provider=provider)
        running.tokens_for = tokens_for = token_providers(settings, http)
        # Per token: the companies under one token may be leased by different instances, which pace it together
        limiter = (
            SharedTokenLimiter(TokenBudgetStore(pool))
            if settings.procore_rate_limit_scope == "token"
            else RateLimiter()
        )
        budgets = TokenBudgets(
            limiter, per_account=bool(settings.procore_tokens_url), scope=settings.procore_rate_limit_scope
        )
        running.budgets = budgets
        # One try per client call: the publisher decides what is safe to send again (see adapters.procore).
        running.procore = ProcoreClient(http, settings.procore_base_url, tokens_for("*"), limiter, max_attempts=1)
        attempts = AttemptLog(pool, topics.publish_results)
        running.attempt_log = attempts
        relay = OutboxRelay(
            pool, publish_raw, settings.db_schema, settings.outbox_batch_size, settings.outbox_poll_interval_s
        )
        running.relay = relay
        ttl = settings.publisher_lease_ttl_s
        # The leases have connections of their own: renewals never queue behind the workers' writes (with
        # hundreds of companies at work the shared pool is always busy, and a late renewal stops every worker).
        lease_pool: asyncpg.Pool = await db.create_pool(dsn, settings.db_schema, min_size=2, max_size=3)
        running.lease_pool = lease_pool
        store = LeaseStore(lease_pool, settings.publisher_instance_id, ttl, settings.publisher_takeover_grace_s)
        keeper = LeaseKeeper(store, limiter, ttl, settings.publisher_lease_margin_s, budgets=budgets)

        async def ready(company_id: int) -> None:
            await limiter.ready(budgets.key(company_id))

        running.workers = CompanyWorkers(
            keeper,
            attempts.next_pending,
            process,
            ready,
            renew_interval_s=ttl / 3,
            takeover_grace_s=settings.publisher_takeover_grace_s,
            max_active=active,
            retry_base_s=settings.publisher_retry_base_s,
            retry_max_s=settings.publisher_retry_max_s,
            batch_size=2 * domain.MAX_BULK,
            process_run=process_run if settings.publisher_bulk_timecards else None,
            runs=runs,
        )
        running.store = store
        relay.start()
        try:
            yield
        finally:
            await relay.stop()
            if isinstance(limiter, SharedTokenLimiter):
                await limiter.drain()
            await http.aclose()
            await lease_pool.close()
            await pool.close()
            provider.force_flush()

    base_checks = health_checks(broker, lambda: running.pool)

    async def check() -> dict[str, bool]:
        """Not ready while results cannot be sent, leases cannot be renewed or some company waits for a dependency."""
        checks = await base_checks()
        workers, relay = running.workers, running.relay
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
        queued = await running.attempts.queue_unemitted()
        if queued:
            log.info("queued %d results an earlier version stored but never sent", queued)
            running.wake_relay()
        assert running.workers is not None, "started by the lifespan"
        await running.workers.start()

    @app.on_shutdown
    async def stop_working() -> None:
        if running.workers is not None:
            await running.workers.stop()
        with contextlib.suppress(Exception):  # the database may be away: the heartbeat expires by itself
            if running.store is not None:
                await running.store.leave()

    return app
