"""The Procore client's token handling, pagination and errors, against fakes (httpx.MockTransport)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.mapping.adapters.procore_links import TokenCipher
from services.publisher.failures import Failure, classify, message_for
from shared.procore import (
    CompanyNotBound,
    ConnectionTokens,
    NotConnected,
    OAuthApp,
    OAuthError,
    ProcoreClient,
    ProcoreError,
    RateLimiter,
    TokenSource,
    TokensUnavailable,
)
from shared.transient import is_transient

Handler = Callable[[httpx.Request], httpx.Response]


def http_with(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


class FakeTokens:
    """A token provider that hands out token-1, token-2, … and counts forced refreshes."""

    def __init__(self) -> None:
        self.issued = 0
        self.forced = 0

    async def __call__(self, company_id: int, force_refresh: bool) -> str:
        if force_refresh or self.issued == 0:
            self.issued += 1
            self.forced += int(force_refresh)
        return f"token-{self.issued}"


# --- token encryption -----------------------------------------------------------------------


def test_tokens_are_encrypted_at_rest_and_round_trip() -> None:
    key = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="
    cipher = TokenCipher(key)
    stored = cipher.encrypt("secret-refresh-token", "acc-1")
    assert "secret-refresh-token" not in stored
    assert cipher.decrypt(stored, "acc-1") == "secret-refresh-token"
    assert cipher.encrypt("same", "acc-1") != cipher.encrypt("same", "acc-1")  # random IV
    other = TokenCipher("A" * 43 + "=")
    with pytest.raises(ValueError, match="TOKEN_ENCRYPTION_KEYS"):
        other.decrypt(stored, "acc-1")
    with pytest.raises(ValueError, match="Fernet key"):
        TokenCipher("x" * 44)


# --- 401: refresh once ----------------------------------------------------------------------


async def test_a_401_refreshes_the_token_once_and_retries() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer token-1":
            return httpx.Response(401, json={"message": "Access token expired"})
        return httpx.Response(200, json={"ok": True})

    tokens = FakeTokens()
    async with http_with(handler) as http:
        client = ProcoreClient(http, "https://procore.test", tokens)
        assert await client.get_json("/rest/v1.0/me", 5) == {"ok": True}
    assert seen == ["Bearer token-1", "Bearer token-2"]
    assert tokens.forced == 1


async def test_a_second_401_is_procores_answer_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(401, json={"code": 401, "message": "App is not authorized", "reason": "unauthorized"})

    tokens = FakeTokens()
    async with http_with(handler) as http:
        client = ProcoreClient(http, "https://procore.test", tokens, max_attempts=5)
        with pytest.raises(ProcoreError) as raised:
            await client.get_json("/rest/v1.0/projects", 5)
    assert raised.value.status == 401
    assert raised.value.message == "App is not authorized"
    assert calls == 2
    assert tokens.forced == 1


async def test_company_header_on_every_call_but_the_company_less_ones() -> None:
    headers: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers.get("procore-company-id"))
        return httpx.Response(200, json=[])

    async with http_with(handler) as http:
        client = ProcoreClient(http, "https://procore.test", FakeTokens())
        await client.get_json("/rest/v1.0/vendors", 42, {"company_id": 42})
        await client.get_json("/rest/v1.0/companies", None)
    assert headers == ["42", None]


# --- pagination and errors -------------------------------------------------------------------


async def test_pagination_follows_link_and_stops_at_total() -> None:
    items = [{"id": i} for i in range(1, 12)]
    pages: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page, per_page = int(request.url.params["page"]), int(request.url.params["per_page"])
        per_page = min(per_page, 5)  # the server clamps per_page
        pages.append(page)
        last = (len(items) + per_page - 1) // per_page
        links = [f'<https://procore.test/x?page={last}>; rel="last"']
        if page < last:
            links.append(f'<https://procore.test/x?page={page + 1}>; rel="next"')
        chunk = items[(page - 1) * per_page : page * per_page]
        return httpx.Response(200, json=chunk, headers={"Total": str(len(items)), "Link": ", ".join(links)})

    async with http_with(handler) as http:
        client = ProcoreClient(http, "https://procore.test", FakeTokens())
        got = [i["id"] async for i in client.paginate("/rest/v1.0/vendors", 1, {"company_id": 1}, per_page=1000)]
    assert got == list(range(1, 12))
    assert pages == [1, 2, 3]


async def test_unpaginated_lists_are_one_page() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"id": 1}, {"id": 2}])

    async with http_with(handler) as http:
        client = ProcoreClient(http, "https://procore.test", FakeTokens())
        got = [i async for i in client.paginate("/rest/v1.0/companies/1/timecard_time_types", 1)]
    assert len(got) == 2


async def test_procores_own_validation_message_is_surfaced() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"errors": {"quantity": ["must be an integer"]}})

    async with http_with(handler) as http:
        client = ProcoreClient(http, "https://procore.test", FakeTokens())
        with pytest.raises(ProcoreError) as raised:
            await client.request("POST", "/rest/v1.0/projects/1/quantity_logs", 1, json={})
    assert raised.value.status == 422
    assert raised.value.message == "quantity must be an integer"


async def test_429_waits_for_retry_after_then_succeeds_and_never_calls_early() -> None:
    stamps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(time.monotonic())
        if len(stamps) == 1:
            return httpx.Response(429, headers={"Retry-After": "1"}, json={"message": "You have surpassed…"})
        return httpx.Response(200, json={"ok": True})

    async with http_with(handler) as http:
        client = ProcoreClient(http, "https://procore.test", FakeTokens(), limiter=RateLimiter(jitter_s=0.05))
        assert await client.get_json("/rest/v1.0/projects", 3) == {"ok": True}
    assert stamps[1] - stamps[0] >= 1.0


async def test_remaining_zero_waits_for_the_reset() -> None:
    stamps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(time.time())
        return httpx.Response(
            200,
            json=[],
            headers={
                "X-Rate-Limit-Limit": "2",
                "X-Rate-Limit-Remaining": "0",
                "X-Rate-Limit-Reset": f"{time.time() + 0.6}",
            },
        )

    async with http_with(handler) as http:
        client = ProcoreClient(http, "https://procore.test", FakeTokens(), limiter=RateLimiter(jitter_s=0.01))
        await client.get_json("/a", 9)
        await client.get_json("/b", 9)
        await client.get_json("/c", 10)  # another company is not slowed
    assert stamps[1] - stamps[0] >= 0.55
    assert stamps[2] - stamps[1] < 0.5


# --- OAuth ------------------------------------------------------------------------------------


class FakeLogin:
    """Procore's /oauth/token with single-use, rotating refresh tokens."""

    def __init__(self) -> None:
        self.live_refresh: set[str] = set()
        self.counter = 0
        self.requests: list[dict[str, Any]] = []

    def issue(self) -> httpx.Response:
        self.counter += 1
        refresh = f"refresh-{self.counter}"
        self.live_refresh.add(refresh)
        return httpx.Response(
            200, json={"access_token": f"access-{self.counter}", "expires_in": 5400, "refresh_token": refresh}
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        if body.get("client_secret") != "s3cret":
            return httpx.Response(
                401, json={"error": "invalid_client", "error_description": "Client authentication failed"}
            )
        if body["grant_type"] == "authorization_code":
            if body.get("code") != "good-code":
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "The grant is invalid"})
            return self.issue()
        if body["grant_type"] == "refresh_token":
            if body.get("refresh_token") not in self.live_refresh:
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "used or revoked"})
            self.live_refresh.discard(body["refresh_token"])
            return self.issue()
        return httpx.Response(200, json={"access_token": "cc-token", "expires_in": 5400})


async def test_authorization_code_then_rotating_refresh() -> None:
    login = FakeLogin()
    async with http_with(login) as http:
        app = OAuthApp(http, "https://login.test/", "client", "s3cret")
        url = app.authorize_url("https://gw.test/oauth/procore/callback", "st@te")
        assert url.startswith("https://login.test/oauth/authorize?response_type=code&client_id=client")
        assert "state=st%40te" in url
        assert "redirect_uri=https%3A%2F%2Fgw.test" in url
        first = await app.exchange_code("good-code", "https://gw.test/oauth/procore/callback")
        assert first.refresh_token == "refresh-1"
        assert first.expires_at > time.time() + 5000
        second = await app.refresh("refresh-1")
        assert (second.access_token, second.refresh_token) == ("access-2", "refresh-2")
        with pytest.raises(OAuthError) as used:
            await app.refresh("refresh-1")  # single use
        assert used.value.needs_reauthorization
        assert used.value.message == "used or revoked"
    assert login.requests[0]["redirect_uri"] == "https://gw.test/oauth/procore/callback"


async def test_bad_client_secret_is_procores_message() -> None:
    async with http_with(FakeLogin()) as http:
        with pytest.raises(OAuthError) as raised:
            await OAuthApp(http, "https://login.test", "client", "wrong").client_credentials()
    assert raised.value.error == "invalid_client"
    assert raised.value.message == "Client authentication failed"


async def test_token_source_keeps_working_for_client_credentials() -> None:
    login = FakeLogin()
    async with http_with(login) as http:
        source = TokenSource(http, "https://login.test", "client", "s3cret")
        assert await source.get() == "cc-token"
        assert await source.get() == "cc-token"
    assert len(login.requests) == 1


async def test_a_refresh_grant_is_not_retried_after_procore_may_have_acted() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(500, json={"error": "server_error", "error_description": "boom"})

    async with http_with(handler) as http:
        with pytest.raises(OAuthError):
            await OAuthApp(http, "https://login.test", "client", "s3cret").refresh("r")
    assert calls == 1


# --- ConnectionTokens (the publisher's view of the mapping service) --------------------------------


class FakeMapping:
    def __init__(self) -> None:
        self.current = "t-1"
        self.calls: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/internal/procore-token"
        if request.headers.get("authorization") != "Bearer internal":
            return httpx.Response(401, json={"message": "no"})
        body = json.loads(request.content)
        self.calls.append(body)
        if body["account_id"] == "nobody":
            return httpx.Response(404, json={"message": "Procore is not connected for account nobody"})
        if body["force_refresh"] and body.get("rejected_token") in (None, self.current):
            self.current = f"t-{int(self.current[2:]) + 1}"
        return httpx.Response(
            200, json={"access_token": self.current, "expires_at": time.time() + 3600, "procore_company_id": 8}
        )


async def test_connection_tokens_cache_force_refresh_and_not_connected() -> None:
    mapping = FakeMapping()
    async with http_with(mapping) as http:
        tokens = ConnectionTokens(http, "http://mapping.test/", "internal")
        first = await tokens.get("acc", 8)
        assert (first.access_token, first.procore_company_id) == ("t-1", 8)
        assert (await tokens.get("acc", 8)).access_token == "t-1"
        assert len(mapping.calls) == 1  # cached
        assert mapping.calls[0] == {"account_id": "acc", "procore_company_id": 8, "force_refresh": False}
        refreshed = await tokens.get("acc", 8, force_refresh=True)
        assert refreshed.access_token == "t-2"
        assert mapping.calls[-1] == {
            "account_id": "acc",
            "procore_company_id": 8,
            "force_refresh": True,
            "rejected_token": "t-1",
        }
        with pytest.raises(NotConnected, match="not connected"):
            await tokens.get("nobody", 8)

        # As a ProcoreClient token provider: Procore's 401 makes it ask for a forced refresh once.
        def procore(request: httpx.Request) -> httpx.Response:
            if request.url.host == "mapping.test":
                return mapping(request)
            ok = request.headers["authorization"] == f"Bearer {mapping.current}" and mapping.current != "t-2"
            return httpx.Response(200 if ok else 401, json={"message": "expired"} if not ok else [])

        async with http_with(procore) as both:
            client = ProcoreClient(
                both, "https://procore.test", ConnectionTokens(both, "http://mapping.test", "internal").provider("acc")
            )
            assert await client.get_json("/rest/v1.0/projects", 8, {"company_id": 8}) == []
        assert mapping.current == "t-3"


async def test_an_unreachable_or_failing_token_endpoint_is_transient_not_procores_answer() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def failing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"message": "mapping is restarting"})

    for handler, problem in ((down, "could not be reached"), (failing, "answered 503: mapping is restarting")):
        async with http_with(handler) as http:
            with pytest.raises(TokensUnavailable, match=problem) as caught:
                await ConnectionTokens(http, "http://mapping.test", "internal").get("acc", 8)
        assert is_transient(caught.value)
        assert not isinstance(caught.value, ProcoreError)


async def test_every_token_request_names_the_company_and_an_unbound_one_fails_for_good() -> None:
    asked: list[dict[str, Any]] = []

    def mapping(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asked.append(body)
        if body["procore_company_id"] == 666:
            return httpx.Response(403, json={"message": "not bound", "error": "company_not_bound"})
        return httpx.Response(
            200, json={"access_token": "t", "expires_at": time.time() + 3600, "procore_company_id": 7}
        )

    async with http_with(mapping) as http:
        provider = ConnectionTokens(http, "http://mapping.test", "internal").provider("acc")
        assert await provider(7, False) == "t"
        with pytest.raises(CompanyNotBound) as refused:
            await provider(666, False)
        with pytest.raises(CompanyNotBound, match="answered for company 7, not 9"):
            await provider(9, False)  # defence in depth: a token for another company is never used
    assert [a["procore_company_id"] for a in asked] == [7, 666, 9]
    assert refused.value.message == "Procore company 666 is not connected to this account"
    assert isinstance(refused.value, NotConnected)
    assert not is_transient(refused.value)
    assert classify(refused.value) is Failure.PERMANENT
    assert message_for(refused.value) == "Procore company 666 is not connected to this account"
