"""Common wiring for the event-driven services: an ASGI FastStream app with health routes and AsyncAPI.

* `GET /health/live`: 200 while the process and its event loop answer (restart it otherwise).
* `GET /health/ready`: 200 only when the database and the broker answer, no consumer is paused on a
  transient failure, and every registered component is healthy; the body names what is not ready.
* `GET /health`: the same as ready (the devstack supervisor and compose health checks use it).
* `GET /metrics`: Prometheus text (shared.metrics), on the same port.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import uvicorn
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared import metrics
from shared.events import SCHEMA_VERSION
from shared.readiness import HasHealthy, Readiness, health_body, readiness_of

HealthCheck = Callable[[], Awaitable[dict[str, bool]]]


def health_checks(broker: KafkaBroker, pool: Callable[[], asyncpg.Pool | None]) -> HealthCheck:
    async def check() -> dict[str, bool]:
        checks = {"broker": await broker.ping(timeout=3.0)}
        current = pool()
        if current is None:
            checks["database"] = False
        else:
            try:
                async with asyncio.timeout(3.0), current.acquire() as conn:
                    checks["database"] = await conn.fetchval("SELECT true") is True
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                checks["database"] = False
        return checks

    return check


def make_service_app(
    broker: KafkaBroker,
    *,
    title: str,
    description: str,
    check: HealthCheck,
    lifespan: Callable[..., AbstractAsyncContextManager[Any]],
    readiness: Readiness | None = None,
    components: Mapping[str, HasHealthy | Callable[[], HasHealthy | None]] | None = None,
) -> AsgiFastStream:
    """`readiness` defaults to the broker's (its consumers report into it); `components` are watched there
    (a getter works for something the lifespan creates later, such as an outbox relay)."""
    registry = readiness if readiness is not None else readiness_of(broker)
    for name, component in (components or {}).items():
        registry.watch(name, component)

    def respond(code: int, body: dict[str, Any]) -> AsgiResponse:
        return AsgiResponse(json.dumps(body).encode(), code, headers={"content-type": "application/json"})

    async def ready_answer() -> AsgiResponse:
        return respond(*health_body(await check(), registry.problems()))

    @get(description="Readiness (the same as /health/ready): 200 when ready to work, 503 with what is not")
    async def health(scope: Any) -> AsgiResponse:
        return await ready_answer()

    @get(
        description="200 only when the database and the broker answer, no consumer is paused on a transient "
        "failure and every component is healthy; 503 otherwise, naming what is not ready"
    )
    async def ready(scope: Any) -> AsgiResponse:
        return await ready_answer()

    @get(description="Liveness: 200 while the process and its event loop answer")
    async def live(scope: Any) -> AsgiResponse:
        return respond(200, {"status": "alive"})

    @get(description="Prometheus metrics of this process (text exposition format)")
    async def metrics_text(scope: Any) -> AsgiResponse:
        return AsgiResponse(await metrics.exposition(broker), 200, headers={"content-type": metrics.CONTENT_TYPE})

    spec = AsyncAPI(
        broker,
        title=title,
        version=f"{SCHEMA_VERSION}.0.0",
        description=description,
        schema_version="3.0.0",
    )
    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health", health),
            ("/health/ready", ready),
            ("/health/live", live),
            ("/metrics", metrics_text),
        ],
        specification=spec,
        asyncapi_path="/asyncapi",
        lifespan=lifespan,
    )


def asyncapi_json(app: AsgiFastStream) -> str:
    spec = app.schema.to_specification()
    return spec.to_json()


def serve(app: Any, host: str, port: int, log_level: str) -> None:
    """log_config=None, log_level=None: uvicorn's lines go through the handler and levels shared.logs set (its
    access log quiet unless LOG_LEVELS asks), not its own. `log_level` is kept for callers; shared.logs applies it."""
    uvicorn.run(app, host=host, port=port, log_level=None, lifespan="on", log_config=None)
