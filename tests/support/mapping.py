"""Helpers for the mapping service's tests: serve ASGI apps over real HTTP in this event loop, build settings,
read command outcomes, and drive the gateway's OAuth round trip against the sandbox."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import httpx
import uvicorn

from services.gateway.config import GatewaySettings
from services.gateway.domain import Principal, issue_token
from services.mapping.config import MappingSettings
from tests.support.kafka import eventually
from tests.support.stack import TEST_TOKEN_KEY, StackConfig

INTERNAL_TOKEN = "internal-test-token-0123456789"
JWT_SECRET = "mapping-tests-jwt-secret-0123456789-abcdef"
ALL_PERMISSIONS = ["procore.publish", "procore.mapping", "procore.setup"]


@asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Run an ASGI app (lifespan included) under uvicorn on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("server stopped during startup")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def mapping_settings(cfg: StackConfig, **overrides: Any) -> MappingSettings:
    values: dict[str, Any] = {
        **cfg.common("mapping"),
        **cfg.procore(),
        "token_encryption_key": TEST_TOKEN_KEY,
        "internal_api_token": INTERNAL_TOKEN,
    }
    values.update(overrides)
    return MappingSettings(**values)


def gateway_settings(cfg: StackConfig, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": cfg.kafka,
        "database_url": cfg.dsn,
        "topic_prefix": cfg.prefix,
        "jwt_secret": JWT_SECRET,
        "aggregator_schema": cfg.schemas["aggregator"],
        "mapping_schema": cfg.schemas["mapping"],
    }
    values.update(overrides)
    return GatewaySettings(**values)


def auth(account: str, permissions: list[str] | None = None, user: str = "u1") -> dict[str, str]:
    who = Principal(user, account, frozenset(ALL_PERMISSIONS if permissions is None else permissions))
    return {"Authorization": f"Bearer {issue_token(who, JWT_SECRET, 3600)}"}


async def outcome(dsn: str, schema: str, command_id: UUID | str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The mapping service's recorded outcome of a command, once there is one."""

    async def probe() -> dict[str, Any] | None:
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                f'SELECT status, message, details FROM "{schema}".command_outcomes WHERE command_id = $1',
                UUID(str(command_id)),
            )
        except asyncpg.UndefinedTableError:
            return None
        finally:
            await conn.close()
        if row is None:
            return None
        details = row["details"]
        return {"status": row["status"], "message": row["message"], "details": json.loads(details) if details else None}

    found = await eventually(probe, lambda r: r is not None, timeout_s=timeout_s, what=f"outcome of {command_id}")
    assert found is not None
    return found


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def oauth_round_trip(gateway: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """Authorize at Procore (the sandbox redirects at once) and follow the redirect to the gateway's callback.

    Returns the command id the callback sent.
    """
    authorize = await gateway.get("/api/procore/authorize", headers=headers)
    assert authorize.status_code == 200, authorize.text
    async with httpx.AsyncClient(timeout=10) as browser:
        consent = await browser.get(authorize.json()["authorize_url"], follow_redirects=False)
    assert consent.status_code == 302, consent.text
    callback = urlsplit(consent.headers["location"])
    assert callback.path == "/oauth/procore/callback"
    back = await gateway.get(f"{callback.path}?{callback.query}", follow_redirects=False)
    assert back.status_code == 303, back.text
    location = back.headers["location"]
    assert "connect_command=" in location, location
    return location.split("connect_command=")[1]
