"""Common wiring for the event-driven services: an ASGI FastStream app with /health and AsyncAPI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg
import uvicorn
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared.events import SCHEMA_VERSION

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
            except (OSError, asyncpg.PostgresError, TimeoutError):
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
) -> AsgiFastStream:
    @get(description="200 when the broker and the database answer, 503 otherwise")
    async def health(scope: Any) -> AsgiResponse:
        checks = await check()
        body = json.dumps({"status": "ok" if all(checks.values()) else "unhealthy", **checks}).encode()
        return AsgiResponse(body, 200 if all(checks.values()) else 503, headers={"content-type": "application/json"})

    spec = AsyncAPI(
        broker,
        title=title,
        version=f"{SCHEMA_VERSION}.0.0",
        description=description,
        schema_version="3.0.0",
    )
    return AsgiFastStream(
        broker,
        asgi_routes=[("/health", health)],
        specification=spec,
        asyncapi_path="/asyncapi",
        lifespan=lifespan,
    )


def asyncapi_json(app: AsgiFastStream) -> str:
    spec = app.schema.to_specification()
    return spec.to_json()


def serve(app: Any, host: str, port: int, log_level: str) -> None:
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), lifespan="on")
