"""The publisher's token source: the account's own Procore connection (via mapping), else the app's token."""

from __future__ import annotations

import json
import time

import httpx

from services.publisher.bootstrap import token_providers
from services.publisher.config import PublisherSettings

BASE = {
    "kafka_bootstrap_servers": "k:9092",
    "database_url": "postgresql://x@y/z",
    "procore_base_url": "http://procore",
    "procore_login_url": "http://procore-login",
    "procore_client_id": "app",
    "procore_client_secret": "secret",
}
INTERNAL = "internal-token-of-32-characters-or-more"


async def test_connection_tokens_per_account_when_a_tokens_url_is_set() -> None:
    seen: list[tuple[str, dict[str, object], str]] = []

    def mapping(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.url.path, body, request.headers["authorization"]))
        token = f"token-of-{body['account_id']}"
        return httpx.Response(200, json={"access_token": token, "expires_at": time.time() + 3600})

    settings = PublisherSettings.model_validate(
        BASE | {"procore_tokens_url": "http://mapping:8083", "internal_api_token": INTERNAL}
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(mapping)) as http:
        tokens_for = token_providers(settings, http)
        assert await tokens_for("acc-1")(42, False) == "token-of-acc-1"
        assert await tokens_for("acc-2")(42, False) == "token-of-acc-2"
        assert await tokens_for("acc-1")(42, False) == "token-of-acc-1"  # cached
    assert [(path, body["account_id"]) for path, body, _ in seen] == [
        ("/internal/procore-token", "acc-1"),
        ("/internal/procore-token", "acc-2"),
    ]
    assert all(auth == f"Bearer {INTERNAL}" for _, _, auth in seen)


async def test_app_client_credentials_without_a_tokens_url() -> None:
    calls: list[dict[str, object]] = []

    def login(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content))
        return httpx.Response(200, json={"access_token": f"app-{len(calls)}", "expires_in": 5400})

    async with httpx.AsyncClient(transport=httpx.MockTransport(login)) as http:
        tokens_for = token_providers(PublisherSettings.model_validate(BASE), http)
        assert await tokens_for("acc-1")(42, False) == "app-1"
        assert await tokens_for("acc-2")(42, False) == "app-1"
        assert await tokens_for("acc-2")(42, True) == "app-2"  # Procore answered 401: refreshed once
    assert calls[0]["grant_type"] == "client_credentials"
    assert calls[0]["client_id"] == "app"
