"""The gateway in production mode over real HTTP: MobiClocks core's tokens verified with keys from a JWKS endpoint
(a tiny app serving keys generated here, rotated during the tests), security headers, request body limits and
per-account rate limits. Real broker and PostgreSQL; the gateway and the key server under uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import httpx
import pytest

from services.gateway.bootstrap import build_app as build_gateway
from services.gateway.config import GatewaySettings
from services.gateway.tokens import DEV_AUDIENCE, Principal, issue_dev_token
from shared.broker import ensure_topics
from tests.support.database import migrated, provisioned
from tests.support.kafka import eventually
from tests.support.mapping import gateway_settings, serve_asgi
from tests.support.security import topic_records
from tests.support.stack import StackConfig
from tests.support.tokens import AUDIENCE, ISSUER, CoreKey, KeyServer

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 18)
PUBLISH = {"action": "publish", "scope": {"kind": "date_range", "date_from": str(DAY), "date_to": str(DAY)}}


@pytest.fixture(scope="module")
def keys() -> dict[str, CoreKey]:
    return {
        "rsa": CoreKey("RS256", "rsa-2026-1"),
        "ed": CoreKey("EdDSA", "ed-2026-1"),
        "next": CoreKey("RS256", "rsa-2026-2"),
    }


@pytest.fixture(scope="module")
async def cfg(kafka_bootstrap: str, postgres_dsn: str) -> AsyncIterator[StackConfig]:
    from devstack.testinfra import run_id

    unique = f"{run_id()}sec"
    async with provisioned(postgres_dsn, f"t_{unique}_") as database:
        config = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", database.schemas)
        await ensure_topics(kafka_bootstrap, config.topics.all())
        await migrated(database, "aggregator", "mapping")
        yield config


def production(cfg: StackConfig, jwks_url: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "environment": "production",
        "jwt_secret": None,
        "jwks_url": jwks_url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwks_refresh_cooldown_s": 0,
        **overrides,
    }
    return gateway_settings(cfg, **values)


@asynccontextmanager
async def gateway(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve_asgi(build_gateway(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


@asynccontextmanager
async def key_server(*keys: CoreKey) -> AsyncIterator[tuple[KeyServer, str]]:
    server = KeyServer(*keys)
    async with serve_asgi(server.app()) as url:
        yield server, f"{url}{KeyServer.PATH}"


async def test_core_tokens_signed_with_rs256_and_eddsa_are_accepted(cfg: StackConfig, keys: dict[str, CoreKey]) -> None:
    async with key_server(keys["rsa"], keys["ed"]) as (_, jwks), gateway(production(cfg, jwks)) as http:
        for key in (keys["rsa"], keys["ed"]):
            me = await http.get("/api/me", headers=key.bearer("acc-1", ["procore.publish"]))
            assert me.status_code == 200, me.text
            assert me.json() == {"user_id": "u1", "account_id": "acc-1", "permissions": ["procore.publish"]}


async def test_a_rotated_key_is_fetched_and_a_withdrawn_one_is_refused(
    cfg: StackConfig, keys: dict[str, CoreKey]
) -> None:
    old, new = keys["rsa"], keys["next"]
    async with key_server(old) as (server, jwks), gateway(production(cfg, jwks, jwks_cache_ttl_s=0.5)) as http:
        assert (await http.get("/api/me", headers=old.bearer("acc-1"))).status_code == 200
        unpublished = await http.get("/api/me", headers=new.bearer("acc-1"))
        assert unpublished.status_code == 401
        assert "kid 'rsa-2026-2'" in unpublished.json()["detail"]
        server.keys = [old, new]  # core publishes its next key and signs with it: the unknown kid fetches the set
        assert (await http.get("/api/me", headers=new.bearer("acc-1"))).status_code == 200
        server.keys = [new]  # and withdraws the old one: gone once the cached set expires (JWKS_CACHE_TTL_S)

        async def old_token() -> int:
            return (await http.get("/api/me", headers=old.bearer("acc-1"))).status_code

        assert await eventually(old_token, lambda status: status == 401, timeout_s=10, what="the old key refused")
        assert (await http.get("/api/me", headers=new.bearer("acc-1"))).status_code == 200


async def test_unknown_kids_fetch_the_key_set_at_most_once_per_cooldown(
    cfg: StackConfig, keys: dict[str, CoreKey]
) -> None:
    async with (
        key_server(keys["rsa"]) as (server, jwks),
        gateway(production(cfg, jwks, jwks_refresh_cooldown_s=3600)) as http,
    ):
        assert (await http.get("/api/me", headers=keys["rsa"].bearer("acc-1"))).status_code == 200
        assert server.fetches == 1
        forgers = [CoreKey("RS256", f"forged-{i}") for i in range(3)]
        answers = await asyncio.gather(
            *(http.get("/api/me", headers=forgers[i % 3].bearer("acc-1")) for i in range(30))
        )
        assert {a.status_code for a in answers} == {401}
        assert server.fetches == 1, "made-up kids must not turn into requests to core's key server"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_key_server_that_cannot_be_reached_is_503_not_401(cfg: StackConfig, keys: dict[str, CoreKey]) -> None:
    jwks = f"http://127.0.0.1:{_closed_port()}{KeyServer.PATH}"
    async with gateway(production(cfg, jwks, jwks_timeout_s=2)) as http:
        answer = await http.get("/api/me", headers=keys["rsa"].bearer("acc-1"))
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"], answer.text


async def test_development_tokens_and_foreign_claims_are_401_in_production(
    cfg: StackConfig, keys: dict[str, CoreKey]
) -> None:
    dev = issue_dev_token(Principal("u1", "acc-1", frozenset({"procore.publish"})), "x" * 40, 600)
    key = keys["rsa"]
    async with key_server(key) as (_, jwks), gateway(production(cfg, jwks)) as http:
        for headers, why in [
            ({"Authorization": f"Bearer {dev}"}, "'HS256' not accepted"),
            (key.bearer("acc-1", aud=DEV_AUDIENCE), "aud"),
            (key.bearer("acc-1", iss="https://elsewhere.test"), "iss"),
            (key.bearer("acc-1", aud="another-service"), "aud"),
        ]:
            answer = await http.get("/api/me", headers=headers)
            assert answer.status_code == 401, answer.text
            assert why in answer.json()["detail"], answer.text
            assert answer.headers["www-authenticate"] == "Bearer"


# --- security headers, body limits, rate limits ---------------------------------------------------------------


async def test_every_answer_carries_the_security_headers(cfg: StackConfig, keys: dict[str, CoreKey]) -> None:
    async with key_server(keys["rsa"]) as (_, jwks), gateway(production(cfg, jwks)) as http:
        answers = {
            "dashboard": await http.get("/"),
            "script": await http.get("/static/app.js"),
            "api": await http.get("/api/me", headers=keys["rsa"].bearer("acc-1")),
            "401": await http.get("/api/me"),
            "404": await http.get("/nowhere"),
            "openapi": await http.get("/openapi.json"),
        }
        for what, answer in answers.items():
            csp = answer.headers.get("content-security-policy", "")
            assert "script-src 'self'" in csp, what
            assert "unsafe-inline" not in csp, what
            assert "frame-ancestors 'none'" in csp, what
            assert answer.headers["x-frame-options"] == "DENY", what
            assert answer.headers["x-content-type-options"] == "nosniff", what
            assert answer.headers["referrer-policy"] == "no-referrer", what
        assert answers["api"].headers["cache-control"] == "no-store"
        assert (await http.get("/docs")).status_code == 404  # Swagger UI loads a CDN's script: development only
        assert (await http.post("/api/dev/login", json={"account_id": "a", "user_id": "u"})).status_code == 404


async def test_bodies_over_the_limit_are_413_naming_it_and_nothing_is_sent(
    cfg: StackConfig, keys: dict[str, CoreKey]
) -> None:
    account = "acc-body"
    headers = keys["rsa"].bearer(account)
    big = {**PUBLISH, "padding": "x" * 5000}
    async with key_server(keys["rsa"]) as (_, jwks), gateway(production(cfg, jwks, max_body_bytes=4096)) as http:
        declared = await http.post("/api/modules/manpower/publish", json=big, headers=headers)
        assert declared.status_code == 413
        assert "4096 bytes" in declared.json()["detail"]
        assert declared.headers["x-frame-options"] == "DENY"

        async def stream() -> AsyncIterator[bytes]:
            body = httpx.Request("POST", "/", json=big).content
            for i in range(0, len(body), 1000):
                yield body[i : i + 1000]

        streamed = await http.post(
            "/api/modules/manpower/publish",
            content=stream(),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert streamed.request.headers.get("transfer-encoding") == "chunked"
        assert streamed.status_code == 413
        assert "4096 bytes" in streamed.json()["detail"]
        fits = await http.post("/api/modules/manpower/publish", json=PUBLISH, headers=headers)
        assert fits.status_code == 202, fits.text
    sent = [r for r in await topic_records(cfg.kafka, cfg.topics.publish_commands) if r["account_id"] == account]
    assert [r["event_id"] for r in sent] == [fits.json()["command_id"]]


async def test_commands_past_the_rate_limit_are_429_with_retry_after_and_not_sent(
    cfg: StackConfig, keys: dict[str, CoreKey]
) -> None:
    busy, calm = "acc-busy", "acc-calm"
    async with (
        key_server(keys["rsa"]) as (_, jwks),
        gateway(production(cfg, jwks, rate_limit_publish="2/minute", rate_limit_sync="1/minute")) as http,
    ):
        answers = [
            await http.post("/api/modules/manpower/publish", json=PUBLISH, headers=keys["rsa"].bearer(busy))
            for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [202, 202, 429]
        limited = answers[2]
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "publish" in limited.json()["detail"]
        assert "2 per 1 minute" in limited.json()["detail"]
        calm_answer = await http.post("/api/modules/manpower/publish", json=PUBLISH, headers=keys["rsa"].bearer(calm))
        assert calm_answer.status_code == 202  # another account has its own budget
        syncs = [
            (await http.post("/api/mapping/vendor/sync", headers=keys["rsa"].bearer(busy))).status_code
            for _ in range(2)
        ]
        assert syncs == [202, 429]
    sent = [
        r["event_id"] for r in await topic_records(cfg.kafka, cfg.topics.publish_commands) if r["account_id"] == busy
    ]
    assert sorted(sent) == sorted(a.json()["command_id"] for a in answers[:2])


# --- development --------------------------------------------------------------------------------------------------


async def test_development_serves_docs_under_their_own_policy_and_warns_about_dev_login(
    cfg: StackConfig, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = gateway_settings(cfg, dev_login=True, http_host="127.0.0.1")
    with caplog.at_level(logging.WARNING):
        app = build_gateway(settings)
    assert "DEV LOGIN IS ON" in capfd.readouterr().err
    assert any("dev login is on" in r.getMessage() for r in caplog.records)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        docs = await http.get("/docs")
        assert docs.status_code == 200
        policy = docs.headers["content-security-policy"]
        assert "'sha256-" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        page = await http.get("/dev/login", params={"account_id": "acc-dev"})
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert '<script src="/static/dev-login.js">' in page.text
