"""The Procore connection over real HTTP: OAuth authorize → callback → token → refresh with rotation,
tokens encrypted at rest, served to other services by the internal endpoint, client credentials too.

Real broker, real PostgreSQL, the sandbox over HTTP; the gateway in-process (ASGI), the mapping
service under uvicorn (its internal token endpoint is called over HTTP).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.gateway.bootstrap import build_app as build_gateway
from services.mapping.adapters.connections import TokenCipher
from services.mapping.bootstrap import build_app as build_mapping
from shared.broker import ensure_topics
from shared.events import CompleteProcoreConnection, ConnectProcore
from shared.procore import ConnectionTokens, NotConnected, ProcoreClient
from tests.sandbox_fixtures import run_sandbox
from tests.support.kafka import consume, produce
from tests.support.mapping import (
    INTERNAL_TOKEN,
    auth,
    fetch,
    gateway_settings,
    mapping_settings,
    oauth_round_trip,
    outcome,
    serve_asgi,
)
from tests.support.stack import TEST_TOKEN_KEY, StackConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


class System:
    def __init__(self, cfg: StackConfig, mapping_url: str, gateway: httpx.AsyncClient, company_id: int) -> None:
        self.cfg = cfg
        self.mapping_url = mapping_url
        self.gateway = gateway
        self.company_id = company_id

    async def connection_row(self, account: str) -> dict[str, Any]:
        rows = await fetch(
            self.cfg.dsn, f'SELECT * FROM "{self.cfg.schemas["mapping"]}".connections WHERE account_id = $1', account
        )
        return dict(rows[0].items())


@pytest.fixture
async def system(
    sandbox: str, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> AsyncIterator[System]:
    async with httpx.AsyncClient(base_url=sandbox) as control:
        seeded = (await control.post("/_sandbox/companies", json={"name": f"Conn {unique}"})).json()
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    gateway = build_gateway(gateway_settings(cfg))
    async with (
        serve_asgi(build_mapping(mapping_settings(cfg))) as mapping_url,
        gateway.router.lifespan_context(gateway),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as http,
    ):
        yield System(cfg, mapping_url, http, seeded["company_id"])


async def internal_token(system: System, body: dict[str, Any], token: str = INTERNAL_TOKEN) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{system.mapping_url}/internal/procore-token", json=body, headers={"Authorization": f"Bearer {token}"}
        )


async def test_oauth_authorize_callback_token_refresh_rotation(system: System, sandbox: str) -> None:
    account = "acc-oauth"
    headers = auth(account)
    command_id = await oauth_round_trip(system.gateway, headers)
    done = await outcome(system.cfg.dsn, system.cfg.schemas["mapping"], command_id)
    assert done["status"] == "done" and "connected to Procore (authorization_code)" in done["message"]

    connection = (await system.gateway.get("/api/procore/connection", headers=headers)).json()
    assert connection["status"] == "connected" and connection["grant"] == "authorization_code"
    assert system.company_id in [c["procore_company_id"] for c in connection["companies"]]
    assert "access_token" not in json.dumps(connection)

    # At rest: encrypted, never in clear.
    cipher = TokenCipher(TEST_TOKEN_KEY)
    row = await system.connection_row(account)
    access, refresh = cipher.decrypt(row["access_token"]), cipher.decrypt(row["refresh_token"])
    assert access not in row["access_token"] and refresh not in row["refresh_token"]

    # Served to other services over HTTP: the stored (fresh) token, which Procore accepts.
    served = await internal_token(system, {"account_id": account})
    assert served.status_code == 200, served.text
    assert served.json()["access_token"] == access
    async with httpx.AsyncClient(base_url=sandbox) as procore:
        me = await procore.get("/rest/v1.0/companies", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 200

        # Forced refresh (Procore rejected the token): a new pair; the old refresh token is burnt.
        forced = await internal_token(system, {"account_id": account, "force_refresh": True, "rejected_token": access})
        assert forced.status_code == 200 and forced.json()["access_token"] != access
        row = await system.connection_row(account)
        assert cipher.decrypt(row["refresh_token"]) != refresh and row["refresh_count"] == 1
        reused = await procore.post(
            "/oauth/token",
            json={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "sandbox-client",
                  "client_secret": "sandbox-secret"},
        )  # fmt: skip
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"

        # A stale 401 report (someone else already refreshed) does not spend another refresh token.
        again = await internal_token(system, {"account_id": account, "force_refresh": True, "rejected_token": access})
        assert again.json()["access_token"] == forced.json()["access_token"]
        assert (await system.connection_row(account))["refresh_count"] == 1

        # The publisher's way: ConnectionTokens as a ProcoreClient token provider; expiry → 401 → one refresh.
        await procore.post("/_sandbox/tokens/expire")
        async with httpx.AsyncClient() as http:
            tokens = ConnectionTokens(http, system.mapping_url, INTERNAL_TOKEN)
            client = ProcoreClient(http, sandbox, tokens.provider(account))
            projects = await client.get_json(
                "/rest/v1.0/projects", system.company_id, {"company_id": system.company_id}
            )
            assert projects == []
            with pytest.raises(NotConnected):
                await tokens.get("acc-never-connected")
        assert (await system.connection_row(account))["refresh_count"] == 2


async def test_refused_refresh_needs_reauthorization_and_says_so(system: System, sandbox: str) -> None:
    account = "acc-revoked"
    command_id = await oauth_round_trip(system.gateway, auth(account))
    assert (await outcome(system.cfg.dsn, system.cfg.schemas["mapping"], command_id))["status"] == "done"
    refresh = TokenCipher(TEST_TOKEN_KEY).decrypt((await system.connection_row(account))["refresh_token"])
    async with httpx.AsyncClient(base_url=sandbox) as procore:
        await procore.post("/oauth/revoke", json={"token": refresh})
    refused = await internal_token(system, {"account_id": account, "force_refresh": True})
    assert refused.status_code == 409 and "invalid" in refused.json()["message"]
    row = await system.connection_row(account)
    assert row["status"] == "needs_reauthorization" and row["access_token"] is None and row["refresh_token"] is None
    changes = await consume(system.cfg.kafka, system.cfg.topics.mapping_changes, 2)
    statuses = [json.loads(r.value).get("connection") for r in changes]
    assert statuses[-1] == "needs_reauthorization"
    view = (await system.gateway.get("/api/procore/connection", headers=auth(account))).json()
    assert view["status"] == "needs_reauthorization" and view["message"]


async def test_internal_endpoint_needs_the_internal_token(system: System) -> None:
    assert (await internal_token(system, {"account_id": "x"}, token="wrong")).status_code == 401
    assert (await internal_token(system, {"account_id": "nobody"})).status_code == 404
    bad = await internal_token(system, {"acount_id": "x"})
    assert bad.status_code == 422 and "account_id" in bad.json()["message"]


async def test_client_credentials_connection(system: System) -> None:
    account = "acc-dmsa"
    accepted = await system.gateway.post(
        "/api/procore/connection", json={"grant": "client_credentials"}, headers=auth(account)
    )
    assert accepted.status_code == 202
    done = await outcome(system.cfg.dsn, system.cfg.schemas["mapping"], accepted.json()["command_id"])
    assert done["status"] == "done" and "client_credentials" in done["message"]
    first = (await internal_token(system, {"account_id": account})).json()["access_token"]
    second = await internal_token(system, {"account_id": account, "force_refresh": True, "rejected_token": first})
    assert second.status_code == 200 and second.json()["access_token"] != first
    row = await system.connection_row(account)
    assert row["grant_type"] == "client_credentials" and row["refresh_token"] is None

    gone = await system.gateway.delete("/api/procore/connection", headers=auth(account))
    assert (await outcome(system.cfg.dsn, system.cfg.schemas["mapping"], gone.json()["command_id"]))["status"] == "done"
    assert (await internal_token(system, {"account_id": account})).status_code == 404


async def test_connecting_needs_the_setup_permission_at_both_layers(system: System) -> None:
    mapper = auth("acc-perm", ["procore.mapping"])
    for method, path in (("GET", "/api/procore/authorize"), ("POST", "/api/procore/connection"),
                         ("DELETE", "/api/procore/connection"), ("GET", "/api/procore/connection")):  # fmt: skip
        body = {"grant": "client_credentials"} if method == "POST" else None
        response = await system.gateway.request(method, path, json=body, headers=mapper)
        assert response.status_code == 403 and response.json()["permission"] == "procore.setup", path
    # Straight onto the topic, bypassing the gateway: the mapping service refuses too.
    sneaky = [
        ConnectProcore(account_id="acc-perm", requested_by="mallory", permissions=["procore.mapping"]),
        CompleteProcoreConnection(account_id="acc-perm", code="c", redirect_uri="http://x/cb", requested_by="mallory",
                                  permissions=[]),
    ]  # fmt: skip
    await produce(system.cfg.kafka, system.cfg.topics.mapping_commands, list(sneaky), key=b"acc-perm")
    for command in sneaky:
        refused = await outcome(system.cfg.dsn, system.cfg.schemas["mapping"], command.event_id)
        assert refused["status"] == "rejected" and "procore.setup" in refused["message"]
    assert await fetch(system.cfg.dsn, f'SELECT 1 FROM "{system.cfg.schemas["mapping"]}".connections'
                       " WHERE account_id = 'acc-perm'") == []  # fmt: skip


async def test_forged_or_missing_state_is_refused_at_the_callback(system: System) -> None:
    forged = await system.gateway.get("/oauth/procore/callback?code=abc&state=not-a-state", follow_redirects=False)
    assert forged.status_code == 303 and "connect_error=" in forged.headers["location"]
    denied = await system.gateway.get(
        "/oauth/procore/callback?error=access_denied&error_description=User+said+no", follow_redirects=False
    )
    assert "User+said+no" in denied.headers["location"] or "User%20said%20no" in denied.headers["location"]
