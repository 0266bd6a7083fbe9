"""Procore OAuth 2.0 at `{login}/oauth/token`: authorization code, refresh (single use, rotating), client credentials.

Grants are not idempotent (a code and a refresh token work once), so a call is retried only
when Procore certainly did not act on it: the connection could not be opened, or Procore
answered 429/503 (rejected before handling). Anything else surfaces as `OAuthError` with
Procore's own `error_description`.
"""

from __future__ import annotations

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
    ) -> None:
        self._http = http
        self.login_url = login_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._max_attempts = max_attempts
        self._clock = clock

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        query = urlencode(
            {"response_type": "code", "client_id": self.client_id, "redirect_uri": redirect_uri, "state": state}
        )
        return f"{self.login_url}/oauth/authorize?{query}"

    async def exchange_code(self, code: str, redirect_uri: str) -> OAuthTokens:
        return await self._grant({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})

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
