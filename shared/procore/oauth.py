"""Procore OAuth 2.0 at `{login}/oauth/token`: authorization code (PKCE optional), refresh (single use, rotating),
client credentials.

Grants are not idempotent (a code and a refresh token work once), so a call is retried only
when Procore certainly did not act on it: the connection could not be opened, or Procore
answered 429/503 (rejected before handling). Anything else surfaces as `OAuthError` with
Procore's own `error_description`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from shared.procore.errors import ProcoreError, error_message

DEFAULT_LIFETIME_S = 5400.0
"""Procore access tokens last 90 minutes; used when a token answer omits `expires_in`."""


class OAuthError(ProcoreError):
    """Procore refused a grant. `error` is the OAuth error code (`invalid_grant`, `invalid_client`, …)."""

    def __init__(self, status: int, message: str, error: str | None = None, body: Any = None) -> None:
        super().__init__(status, message, body)
        self.error = error

    @property
    def needs_reauthorization(self) -> bool:
        """The stored grant (refresh token, code, client credentials) will never work again."""
        return self.error in ("invalid_grant", "invalid_client", "unauthorized_client") or self.status in (400, 401)


@dataclass(frozen=True)
class OAuthTokens:
    access_token: str
    expires_at: float
    """Unix seconds."""
    refresh_token: str | None = None


@dataclass(frozen=True)
class Pkce:
    """RFC 7636 proof key: the verifier stays with us; the S256 challenge goes in the authorize URL."""

    verifier: str
    challenge: str

    @staticmethod
    def new() -> Pkce:
        verifier = secrets.token_urlsafe(64)  # 86 characters of the unreserved set (43..128 allowed)
        return Pkce(verifier, s256(verifier))


def s256(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 section 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def _safe_to_retry(error: BaseException) -> bool:
    if isinstance(error, OAuthError):
        return error.status in (429, 503)
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


class OAuthApp:
    """One registered Procore app (client id + secret) talking to one login host."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        login_url: str,
        client_id: str,
        client_secret: str,
        max_attempts: int = 4,
        clock: Callable[[], float] = time.time,
        browser_login_url: str = "",
    ) -> None:
        self._http = http
        self.login_url = login_url.rstrip("/")
        self.browser_login_url = (browser_login_url or login_url).rstrip("/")
        """Where a user's browser is sent to authorize: the login host as the browser reaches it (in compose the
        services reach the sandbox by its container name, the browser on the host by localhost)."""
        self.client_id = client_id
        self._client_secret = client_secret
        self._max_attempts = max_attempts
        self._clock = clock

    def for_client(self, client_id: str, client_secret: str) -> OAuthApp:
        """Another registered client (a customer's own service account) on the same login host and HTTP pool."""
        return OAuthApp(
            self._http,
            self.login_url,
            client_id,
            client_secret,
            self._max_attempts,
            self._clock,
            self.browser_login_url,
        )

    def authorize_url(self, redirect_uri: str, state: str, code_challenge: str | None = None) -> str:
        query = {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri, "state": state}
        if code_challenge is not None:
            query |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
        return f"{self.browser_login_url}/oauth/authorize?{urlencode(query)}"

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None = None) -> OAuthTokens:
        fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            fields["code_verifier"] = code_verifier
        return await self._grant(fields)

    async def refresh(self, refresh_token: str) -> OAuthTokens:
        """Trade a refresh token for a new pair; the old refresh token is burnt by Procore."""
        return await self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def client_credentials(self) -> OAuthTokens:
        return await self._grant({"grant_type": "client_credentials"})

    async def revoke(self, token: str) -> None:
        """Best effort (RFC 7009): Procore forgets the token; errors are not worth failing a disconnect."""
        try:
            await self._http.post(
                f"{self.login_url}/oauth/revoke",
                json={"token": token, "client_id": self.client_id, "client_secret": self._client_secret},
            )
        except httpx.HTTPError:
            return

    async def _grant(self, fields: dict[str, str]) -> OAuthTokens:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=10.0),
            retry=retry_if_exception(_safe_to_retry),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._post_token(fields)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_token(self, fields: dict[str, str]) -> OAuthTokens:
        response = await self._http.post(
            f"{self.login_url}/oauth/token",
            json={**fields, "client_id": self.client_id, "client_secret": self._client_secret},
        )
        if response.status_code != 200:
            body = _json_or_none(response)
            code = body.get("error") if isinstance(body, dict) else None
            raise OAuthError(
                response.status_code, error_message(response), code if isinstance(code, str) else None, body
            )
        body = response.json()
        # Our own clock, not Procore's created_at: expiry is compared with our clock.
        lifetime = float(body.get("expires_in") or DEFAULT_LIFETIME_S)
        refresh = body.get("refresh_token")
        return OAuthTokens(str(body["access_token"]), self._clock() + lifetime, str(refresh) if refresh else None)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
