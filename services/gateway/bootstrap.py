"""The one place that wires the gateway: settings → auth, pool, broker, command bus, routes, HTTP guards, telemetry."""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from starlette.responses import Response

from services.gateway import api, dev_login
from services.gateway.adapters.commands import KafkaCommandBus
from services.gateway.adapters.live import LiveHub
from services.gateway.adapters.mapping_internal import MappingInternal
from services.gateway.auth import TokenVerifier
from services.gateway.config import GatewaySettings
from services.gateway.errors import install_error_handlers
from services.gateway.http_guard import BodyLimit, SecurityHeaders, page_policy
from services.gateway.oauth_privacy import install_access_log_scrubber, scrub_server_span
from services.gateway.rate_limits import CommandRateLimits
from services.gateway.tokens import DEV_AUDIENCE, live_ticket_key
from services.gateway.week_cache import WeekCache
from shared import db, metrics
from shared.broker import make_broker
from shared.events import SCHEMA_VERSION
from shared.telemetry import instrument_asyncpg, make_tracer_provider

SERVICE = "gateway"
STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)

DEV_LOGIN_WARNING = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! DEV LOGIN IS ON (DEV_LOGIN=true, ENVIRONMENT=development): anyone who reaches http://{host}:{port} can sign in
!! as any account with every permission. Development tokens (HS256, audience {audience}) are accepted here;
!! production refuses them. Never expose this gateway beyond this machine.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""


class RevalidatedStaticFiles(StaticFiles):
    """The dashboard has no build step (no hashed file names): browsers revalidate on every load."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def build_app(
    settings: GatewaySettings, tracer_provider: TracerProvider | None = None, instance_key: bytes | None = None
) -> FastAPI:
    """`instance_key`: without INTERNAL_API_TOKEN, what live tickets and force-publish previews are signed with
    (the workers of one gateway share it, so a ticket from one is taken by another); default a key of this process."""
    provider = tracer_provider or make_tracer_provider(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    topics = settings.topics
    # Publish only: no subscribers, so the dead-letter middleware never runs here.
    broker = make_broker(settings.kafka_bootstrap_servers, SERVICE, topics, provider)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        instrument_asyncpg(provider)
        # Only the aggregator's read contract (views) is on the search path: the gateway's role reads nothing else.
        app.state.pool = await db.create_pool(
            settings.database_url.get_secret_value(), db.read_schema(settings.aggregator_schema)
        )
        # The mapping service's internal API: where the OAuth code and service-account secrets go (never Kafka).
        internal_http = httpx.AsyncClient(timeout=30.0)
        HTTPXClientInstrumentor.instrument_client(internal_http, tracer_provider=provider)
        app.state.mapping_internal = MappingInternal(
            internal_http, settings.mapping_url, settings.internal_api_token.get_secret_value()
        )
        # Live updates: one LISTEN connection for the whole process, fanned out to every client.
        app.state.live = LiveHub(
            settings.database_url.get_secret_value(), settings.aggregator_schema, settings.mapping_schema
        )
        app.state.week_cache = WeekCache(
            lambda: app.state.live.listening, settings.week_cache_entries, settings.week_cache_ttl_s
        )
        app.state.live.watch(app.state.week_cache)
        await app.state.live.start()
        try:
            await broker.start()
            app.state.broker = broker
            app.state.bus = KafkaCommandBus(broker, topics)
            yield
        finally:
            await app.state.live.stop()
            await internal_http.aclose()
            await broker.stop()
            await app.state.pool.close()
            provider.force_flush()

    app = FastAPI(
        # /docs loads Swagger UI from a CDN onto the origin that holds the user's token: development only, below.
        docs_url=None,
        redoc_url=None,
        title="MobiClocks Procore gateway",
        version=f"{SCHEMA_VERSION}.0.0",
        description=(
            "The dashboard's HTTP API: queries read the aggregator's read model, commands go out as "
            "events. Every call is scoped to the account of the bearer token."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier.from_settings(settings)
    app.state.live_ticket_key = live_ticket_key(
        settings.internal_api_token.get_secret_value(), instance_key or secrets.token_bytes(32)
    )
    app.state.rate_limits = CommandRateLimits(settings.rate_limits, settings.rate_limit_storage)
    install_error_handlers(app)
    app.include_router(api.router)
    if settings.development:
        _add_docs(app)
    if settings.dev_login:
        # The settings allow it only in development on loopback; say so loudly all the same.
        warning = DEV_LOGIN_WARNING.format(host=settings.http_host, port=settings.http_port, audience=DEV_AUDIENCE)
        print(warning, file=sys.stderr, flush=True)
        log.warning("dev login is on: anyone reaching this gateway can sign in as any account (development only)")
        app.include_router(dev_login.router)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        """The dashboard (a static page; it calls the API with the token from localStorage)."""
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", RevalidatedStaticFiles(directory=STATIC), name="static")

    @app.get("/metrics", include_in_schema=False)
    async def metrics_text() -> Response:
        """Prometheus metrics of this process (text exposition format)."""
        return Response(await metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # Outermost: every answer carries the headers, the 413s and 500s included.
    hsts = {"Strict-Transport-Security": "max-age=31536000"} if settings.https else {}
    app.add_middleware(SecurityHeaders, extra=hsts)
    # Outside the others: the status counted is the one the client got.
    app.add_middleware(metrics.HttpServerMetrics)
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls="/health,/metrics,/static/.*",
        # one span per request (and the database's below it), not three more for the ASGI messages of each answer
        exclude_spans=["receive", "send"],
        server_request_hook=scrub_server_span,
    )
    install_access_log_scrubber()
    return app


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, development only, under a policy allowing exactly its own scripts (by hash and origin)."""
    page = get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI")
    policy = page_policy(bytes(page.body).decode())

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(bytes(page.body).decode(), headers={"Content-Security-Policy": policy})
