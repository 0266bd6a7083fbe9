"""The Procore connection over real HTTP: OAuth authorize → consent → callback → token (PKCE) → refresh with
rotation, tokens encrypted at rest, served to other services by the internal endpoint for bound companies; a
customer's own service account too (never the app's shared credentials).

Real broker, real PostgreSQL, the sandbox over HTTP; the gateway in-process (ASGI, one cookie jar = one
browser), the mapping service under uvicorn (its internal API is called over HTTP).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.gateway.bootstrap import build_app as build_gateway
from services.mapping.adapters.procore_links import TokenCipher
from services.mapping.domain import REFRESH_BURNT, SERVICE_ACCOUNT_NEEDS_COMPANY
from shared import metrics
from shared.broker import ensure_topics
from shared.events import CompleteProcoreConnection, UnbindProcoreCompany
from shared.procore import ConnectionTokens, NotConnected, ProcoreClient
from tests.sandbox_fixtures import run_sandbox
from tests.support.kafka import consume, produce
from tests.support.mapping import (
    INTERNAL_TOKEN,
    auth,
    fetch,
    gateway_settings,
    internal,
    mapping_settings,
    oauth_round_trip,
    outcome,
    sandbox_user,
    serve_mapping,
    service_account,
)
from tests.support.stack import TEST_TOKEN_KEY, StackConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


class System:
    def __init__(
        self, cfg: StackConfig, mapping_url: str, gateway: httpx.AsyncClient, company_id: int, login: str
    ) -> None:
        self.cfg = cfg
        self.mapping_url = mapping_url
        self.gateway = gateway
        self.company_id = company_id
        self.login = login
        """A Procore user of the company."""

    async def connection_row(self, account: str) -> dict[str, Any]:
        rows = await fetch(
            self.cfg.dsn, f'SELECT * FROM "{self.cfg.schemas["mapping"]}".connections WHERE account_id = $1', account
        )
        return dict(rows[0].items())

    async def done(self, command_id: str) -> dict[str, Any]:
        return await outcome(self.cfg.dsn, self.cfg.schemas["mapping"], command_id)


@pytest.fixture
async def system(
    sandbox: str, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> AsyncIterator[System]:
    async with httpx.AsyncClient(base_url=sandbox) as control:
        seeded = (await control.post("/_sandbox/companies", json={"name": f"Conn {unique}"})).json()
    login = f"pat-{unique}@conn.example"
    await sandbox_user(sandbox, login, [seeded["company_id"]])
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    async with serve_mapping(mapping_settings(cfg)) as mapping_url:
        gateway = build_gateway(gateway_settings(cfg, mapping_url))
        async with (
            gateway.router.lifespan_context(gateway),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as http,
        ):
            yield System(cfg, mapping_url, http, seeded["company_id"], login)


async def internal_token(system: System, body: dict[str, Any], token: str = INTERNAL_TOKEN) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{system.mapping_url}/internal/procore-token", json=body, headers={"Authorization": f"Bearer {token}"}
        )


async def test_oauth_authorize_callback_token_refresh_rotation(system: System, sandbox: str) -> None:
    account = "acc-oauth"
    headers = auth(account)
    connected = await oauth_round_trip(system.gateway, headers, system.login)
    done = await system.done(connected.command_id)
    assert done["status"] == "done", done
    assert "Connected to Procore with a Procore user's consent (OAuth)" in done["message"], done

    connection = (await system.gateway.get("/api/procore/connection", headers=headers)).json()
    assert connection["status"] == "connected"
    assert connection["grant"] == "authorization_code"
    assert [(c["procore_company_id"], c["proof"]) for c in connection["companies"]] == [
        (system.company_id, "user_consent")
    ]
    assert connection["procore_company_id"] == system.company_id, "the only company is chosen"
    assert "access_token" not in json.dumps(connection)

    # At rest: encrypted, never in clear.
    cipher = TokenCipher(TEST_TOKEN_KEY)
    row = await system.connection_row(account)
    access, refresh = cipher.decrypt(row["access_token"], account), cipher.decrypt(row["refresh_token"], account)
    assert access not in row["access_token"]
    assert refresh not in row["refresh_token"]

    # Served to other services over HTTP for the bound company: the stored (fresh) token, which Procore accepts.
    served = await internal_token(system, {"account_id": account, "procore_company_id": system.company_id})
    assert served.status_code == 200, served.text
    assert served.json() | {"access_token": "…"} == {
        "access_token": "…",
        "expires_at": served.json()["expires_at"],
        "procore_company_id": system.company_id,
    }
    assert served.json()["access_token"] == access
    async with httpx.AsyncClient(base_url=sandbox) as procore:
        listed = await procore.get("/rest/v1.0/companies", headers={"Authorization": f"Bearer {access}"})
        assert [c["id"] for c in listed.json()] == [system.company_id], "a user's token lists the user's companies"

        # Forced refresh (Procore rejected the token): a new pair; the old refresh token is burnt.
        forced = await internal_token(system, {"account_id": account, "force_refresh": True, "rejected_token": access})
        assert forced.status_code == 200
        assert forced.json()["access_token"] != access
        row = await system.connection_row(account)
        assert cipher.decrypt(row["refresh_token"], account) != refresh
        assert row["refresh_count"] == 1
        reused = await procore.post(
            "/oauth/token",
            json={
                "grant_type": "refresh_token",
                "refresh_token": refresh,
                "client_id": "sandbox-client",
                "client_secret": "sandbox-secret",
            },
        )
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"

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
                await tokens.get("acc-never-connected", None)
        assert (await system.connection_row(account))["refresh_count"] == 2


async def test_pkce_challenge_is_sent_and_its_verifier_proven(system: System, sandbox: str) -> None:
    authorize = await system.gateway.get("/api/procore/authorize", headers=auth("acc-pkce"))
    url = authorize.json()["authorize_url"]
    assert "code_challenge=" in url
    assert "code_challenge_method=S256" in url
    assert "redirect_uri=http%3A%2F%2Fgateway%2Foauth%2Fprocore%2Fcallback" in url, "fixed by settings"
    async with httpx.AsyncClient(base_url=sandbox) as control:
        await control.delete("/_sandbox/requests")
    connected = await oauth_round_trip(system.gateway, auth("acc-pkce"), system.login)
    assert (await system.done(connected.command_id))["status"] == "done"
    async with httpx.AsyncClient(base_url=sandbox) as control:
        (exchange,) = (await control.get("/_sandbox/requests", params={"path": "/oauth/token"})).json()
    assert exchange["status"] == 200
    assert "code_verifier" in exchange["body"]


async def test_refused_refresh_needs_reauthorization_and_says_so(system: System, sandbox: str) -> None:
    account = "acc-revoked"
    connected = await oauth_round_trip(system.gateway, auth(account), system.login)
    assert (await system.done(connected.command_id))["status"] == "done"
    refresh = TokenCipher(TEST_TOKEN_KEY).decrypt((await system.connection_row(account))["refresh_token"], account)
    async with httpx.AsyncClient(base_url=sandbox) as procore:
        await procore.post("/oauth/revoke", json={"token": refresh})
    refused = await internal_token(system, {"account_id": account, "force_refresh": True})
    assert refused.status_code == 409
    assert "invalid" in refused.json()["message"]
    row = await system.connection_row(account)
    assert row["status"] == "needs_reauthorization"
    assert row["access_token"] is None
    assert row["refresh_token"] is None
    changes = await consume(system.cfg.kafka, system.cfg.topics.mapping_changes, 2)
    statuses = [json.loads(r.value).get("connection") for r in changes]
    assert statuses[-1] == "needs_reauthorization"
    view = (await system.gateway.get("/api/procore/connection", headers=auth(account))).json()
    assert view["status"] == "needs_reauthorization"
    assert view["message"]


async def test_internal_endpoint_needs_the_internal_token(system: System) -> None:
    assert (await internal_token(system, {"account_id": "x"}, token="wrong")).status_code == 401
    assert (await internal_token(system, {"account_id": "nobody"})).status_code == 404
    bad = await internal_token(system, {"acount_id": "x"})
    assert bad.status_code == 422
    assert "account_id" in bad.json()["message"]
    async with httpx.AsyncClient() as http:
        start = await http.post(f"{system.mapping_url}/internal/oauth/start", json={})
    assert start.status_code == 401


async def test_customer_service_account_connects_the_app_credentials_prove_nothing(system: System) -> None:
    account = "acc-sa"
    app_own = await system.gateway.post(
        "/api/procore/connection",
        json={"grant": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret"},
        headers=auth(account),
    )
    assert app_own.status_code == 422, app_own.text
    assert "prove nothing" in app_own.json()["detail"], app_own.text
    client_id, secret = await service_account(system.cfg.procore_url, system.company_id)
    wrong = await system.gateway.post(
        "/api/procore/connection",
        json={"grant": "client_credentials", "client_id": client_id, "client_secret": "not-the-secret"},
        headers=auth(account),
    )
    assert wrong.status_code == 422
    assert "Procore refused these credentials" in wrong.json()["detail"]
    assert "not-the-secret" not in wrong.text
    assert (
        await fetch(
            system.cfg.dsn,
            f'SELECT 1 FROM "{system.cfg.schemas["mapping"]}".connections WHERE account_id = $1',
            account,
        )
        == []
    ), "nothing is stored for refused credentials"

    accepted = await system.gateway.post(
        "/api/procore/connection",
        json={"grant": "client_credentials", "client_id": client_id, "client_secret": secret},
        headers=auth(account),
    )
    assert accepted.status_code == 202, accepted.text
    done = await system.done(accepted.json()["command_id"])
    assert done["status"] == "done", done
    assert "your company's own service account" in done["message"], done
    row = await system.connection_row(account)
    assert row["grant_type"] == "client_credentials"
    assert row["refresh_token"] is None
    assert row["client_id"] == client_id
    assert secret not in row["client_secret"]
    assert TokenCipher(TEST_TOKEN_KEY).decrypt(row["client_secret"], account) == secret

    # Renewed with the customer's credentials, never the app's.
    first = (await internal_token(system, {"account_id": account})).json()["access_token"]
    second = await internal_token(system, {"account_id": account, "force_refresh": True, "rejected_token": first})
    assert second.status_code == 200
    assert second.json()["access_token"] != first
    async with httpx.AsyncClient(base_url=system.cfg.procore_url) as control:
        grants = (await control.get("/_sandbox/requests", params={"path": "/oauth/token"})).json()
    assert grants[-1]["body"]["client_id"] == client_id

    gone = await system.gateway.delete("/api/procore/connection", headers=auth(account))
    disconnected = await system.done(gone.json()["command_id"])
    assert disconnected["status"] == "done"
    assert "stay connected" in disconnected["message"]
    assert (await internal_token(system, {"account_id": account})).status_code == 404
    view = (await system.gateway.get("/api/procore/connection", headers=auth(account))).json()
    assert [c["procore_company_id"] for c in view["companies"]] == [system.company_id], "still bound"


async def test_connecting_needs_the_setup_permission_at_both_layers(system: System) -> None:
    mapper = auth("acc-perm", ["procore.mapping"])
    body = {"grant": "client_credentials", "client_id": "c", "client_secret": "s"}
    for method, path in (
        ("GET", "/api/procore/authorize"),
        ("POST", "/api/procore/connection"),
        ("DELETE", "/api/procore/connection"),
        ("GET", "/api/procore/connection"),
        ("DELETE", f"/api/procore/companies/{system.company_id}"),
    ):
        response = await system.gateway.request(method, path, json=body if method == "POST" else None, headers=mapper)
        assert response.status_code == 403, path
        assert response.json()["permission"] == "procore.setup", path
    # Straight to the mapping service, bypassing the gateway: refused there too.
    start = await internal(
        system.mapping_url,
        "/oauth/start",
        {
            "account_id": "acc-perm",
            "user_id": "mallory",
            "permissions": ["procore.mapping"],
            "redirect_uri": "http://x/cb",
        },
    )
    assert start.status_code == 403
    assert "Procore setup (administrator)" in start.json()["message"]
    sneaky = [
        CompleteProcoreConnection(account_id="acc-perm", requested_by="mallory", permissions=[]),
        UnbindProcoreCompany(
            account_id="acc-perm", procore_company_id=system.company_id, requested_by="mallory", permissions=[]
        ),
    ]
    await produce(system.cfg.kafka, system.cfg.topics.mapping_commands, list(sneaky), key=b"acc-perm")
    for command in sneaky:
        refused = await system.done(str(command.event_id))
        assert refused["status"] == "rejected"
        assert "Procore setup (administrator)" in refused["message"]
    assert (
        await fetch(
            system.cfg.dsn,
            f'SELECT 1 FROM "{system.cfg.schemas["mapping"]}".connections WHERE account_id = $1',
            "acc-perm",
        )
        == []
    )


async def test_forged_missing_or_denied_callbacks_go_back_to_setup_with_the_reason(system: System) -> None:
    forged = await system.gateway.get("/oauth/procore/callback?code=abc&state=not-a-state", follow_redirects=False)
    assert forged.status_code == 303
    assert "connect_error=" in forged.headers["location"]
    assert "unknown" in forged.headers["location"]
    assert forged.headers["referrer-policy"] == "no-referrer"
    assert forged.headers["cache-control"] == "no-store"
    denied = await system.gateway.get(
        "/oauth/procore/callback?error=access_denied&error_description=User+said+no", follow_redirects=False
    )
    assert "User+said+no" in denied.headers["location"] or "User%20said%20no" in denied.headers["location"]


async def test_a_refresh_whose_answer_is_lost_burns_the_token_and_setup_says_to_connect_again(
    system: System, sandbox: str
) -> None:
    """The sandbox's `lose_refresh_answers` rule: Procore rotates the pair, the answer never arrives, the old refresh
    token is burnt. The first caller is told to try again; the next refresh is refused, the connection needs
    reauthorization with the reason, and from then on nobody asks Procore again (no retry storm)."""
    account = "acc-burnt"
    connected = await oauth_round_trip(system.gateway, auth(account), system.login)
    assert (await system.done(connected.command_id))["status"] == "done"
    lost_before = metrics.REFRESH_ANSWERS_LOST._value.get()
    async with httpx.AsyncClient(base_url=sandbox) as control:
        rules = await control.put(f"/_sandbox/companies/{system.company_id}/rules", json={"lose_refresh_answers": True})
        assert rules.status_code == 200
        assert rules.json()["lose_refresh_answers"] is True
        try:
            first = await internal_token(system, {"account_id": account, "force_refresh": True})
            assert first.status_code == 503, first.text  # unavailable for now: the caller tries again
            assert (await system.connection_row(account))["refresh_answer_lost_at"] is not None
            assert metrics.REFRESH_ANSWERS_LOST._value.get() == lost_before + 1
            second = await internal_token(system, {"account_id": account, "force_refresh": True})
            assert second.status_code == 409, second.text
            assert second.json()["message"] == REFRESH_BURNT, second.text
            row = await system.connection_row(account)
            assert row["status"] == "needs_reauthorization"
            assert row["refresh_token"] is None
            asked = len((await control.get("/_sandbox/requests", params={"path": "/oauth/token"})).json())
            for _ in range(5):  # the publisher's retries: refused here, Procore is not asked again
                assert (await internal_token(system, {"account_id": account, "force_refresh": True})).status_code == 409
            assert len((await control.get("/_sandbox/requests", params={"path": "/oauth/token"})).json()) == asked
        finally:
            await control.put(f"/_sandbox/companies/{system.company_id}/rules", json={"lose_refresh_answers": False})
    view = (await system.gateway.get("/api/procore/connection", headers=auth(account))).json()
    assert view["status"] == "needs_reauthorization"
    assert view["message"] == REFRESH_BURNT


async def test_a_service_account_names_its_company_on_companies_when_procore_asks_for_it(system: System) -> None:
    """The sandbox's `service_account_company_header` rule (Procore's documented rule for service accounts):
    `/companies` without Procore-Company-Id is refused; Setup says to enter the company ID, and with it the
    connection is proven (the header names the company; Procore checks the service account is installed there)."""
    account = "acc-sa-header"
    client_id, secret = await service_account(system.cfg.procore_url, system.company_id)
    async with httpx.AsyncClient(base_url=system.cfg.procore_url) as control:
        rules = f"/_sandbox/companies/{system.company_id}/rules"
        assert (await control.put(rules, json={"service_account_company_header": True})).status_code == 200
        try:
            body = {"grant": "client_credentials", "client_id": client_id, "client_secret": secret}
            without = await system.gateway.post("/api/procore/connection", json=body, headers=auth(account))
            assert without.status_code == 202, without.text
            refused = await system.done(without.json()["command_id"])
            assert refused["status"] == "rejected", refused
            assert refused["message"] == SERVICE_ACCOUNT_NEEDS_COMPANY, refused
            assert (await system.gateway.get("/api/procore/connection", headers=auth(account))).json()[
                "companies"
            ] == []

            named = {**body, "procore_company_id": system.company_id}
            accepted = await system.gateway.post("/api/procore/connection", json=named, headers=auth(account))
            assert accepted.status_code == 202, accepted.text
            done = await system.done(accepted.json()["command_id"])
            assert done["status"] == "done", done
            view = (await system.gateway.get("/api/procore/connection", headers=auth(account))).json()
            assert [c["procore_company_id"] for c in view["companies"]] == [system.company_id]
            calls = (await control.get("/_sandbox/requests", params={"path": "/rest/v1.0/companies"})).json()
            mine = [c for c in calls if c["client_id"] == client_id]
            assert [c["status"] for c in mine] == [400, 200], mine
            assert mine[-1]["headers"]["procore-company-id"] == str(system.company_id)
        finally:
            await control.put(rules, json={"service_account_company_header": False})
