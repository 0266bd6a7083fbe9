"""An async Procore REST client: OAuth tokens, company header, pagination, rate limits, retries.

One pooled httpx client serves all companies. Transient failures (connection errors,
timeouts, 5xx, 429) are retried with exponential backoff and jitter, bounded by
`max_attempts`; before every call the per-company `RateLimiter` waits for whatever
Procore's `X-Rate-Limit-*`/`Retry-After` headers said. A 401 refreshes the token once and
retries; a second 401, or any other 4xx, raises `ProcoreError` carrying Procore's message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from shared.procore.errors import ProcoreError, error_message
from shared.procore.oauth import OAuthApp
from shared.procore.ratelimit import RateLimiter, budget_key

log = logging.getLogger(__name__)

REST = "/rest/v1.0"

__all__ = ["REST", "ProcoreClient", "ProcoreError", "Token", "TokenProvider", "TokenSource", "error_message"]


@dataclass
class Token:
    access_token: str
    expires_at: float


class TokenSource:
    """Client-credentials tokens of one app, fetched once and renewed shortly before they expire."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        login_url: str,
        client_id: str,
        client_secret: str,
        refresh_margin_s: float = 300.0,
    ) -> None:
        self._app = OAuthApp(http, login_url, client_id, client_secret)
        self._margin = refresh_margin_s
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    async def get(self, force_refresh: bool = False) -> str:
        async with self._lock:
            if force_refresh or self._token is None or self._token.expires_at - self._margin < time.time():
                self._token = await self._fetch()
            return self._token.access_token

    async def _fetch(self) -> Token:
        tokens = await self._app.client_credentials()
        return Token(tokens.access_token, tokens.expires_at)


TokenProvider = Callable[[int, bool], Awaitable[str]]
"""(company_id, force_refresh) → access token."""


class ProcoreClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        tokens: TokenProvider,
        limiter: RateLimiter | None = None,
        max_attempts: int = 5,
        max_wait_s: float = 30.0,
        budget: Hashable | None = None,
    ) -> None:
        self._http = http
        self._budget = budget
        """The rate budget every call spends (Procore counts per token); None: one per company (`budget_key`)."""
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self.limiter = limiter or RateLimiter()
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s

    def with_tokens(self, tokens: TokenProvider, budget: Hashable | None = None) -> ProcoreClient:
        """The same pooled connection and rate limiter, another connection's tokens (one account's) and, when given,
        the rate budget those tokens spend."""
        return ProcoreClient(
            self._http, self._base, tokens, self.limiter, self._max_attempts, self._max_wait_s, budget=budget
        )

    async def request(
        self,
        method: str,
        path: str,
        company_id: int | None,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        before_send: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """One logical call, retried on transient failures; raises ProcoreError on a permanent one.

        `company_id` None: the few calls Procore answers without `Procore-Company-Id` (`/companies`, `/me`).
        `before_send` runs immediately before each try goes on the wire (after any rate-limit wait) and may
        raise to stop it: the publisher checks there that it still holds the company's lease.
        """
        refreshed = False
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=self._max_wait_s),
            retry=retry_if_exception(_is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                while True:
                    response = await self._send(
                        method, path, company_id, params, json, force_refresh=refreshed, before_send=before_send
                    )
                    if response.status_code == 401 and not refreshed:
                        # The token expired or was revoked early: refresh once, then it is Procore's answer.
                        refreshed = True
                        continue
                    break
                if response.status_code >= 400:
                    raise ProcoreError(response.status_code, error_message(response), _safe_json(response))
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        method: str,
        path: str,
        company_id: int | None,
        params: dict[str, Any] | None,
        json: Any,
        *,
        force_refresh: bool,
        before_send: Callable[[], None] | None = None,
    ) -> httpx.Response:
        budget = self._budget if self._budget is not None else budget_key(company_id)
        await self.limiter.acquire(budget)
        try:
            token = await self._tokens(company_id or 0, force_refresh)
            headers = {"Authorization": f"Bearer {token}"}
            if company_id is not None:
                headers["Procore-Company-Id"] = str(company_id)
            if before_send is not None:
                before_send()
            response = await self._http.request(
                method, f"{self._base}{path}", params=params, json=json, headers=headers
            )
        except BaseException:
            self.limiter.release(budget)  # no answer: give the company's slot back
            raise
        self.limiter.observe(budget, response.status_code, response.headers)
        return response

    async def get_json(self, path: str, company_id: int | None, params: dict[str, Any] | None = None) -> Any:
        return (await self.request("GET", path, company_id, params=params)).json()

    async def paginate(
        self, path: str, company_id: int | None, params: dict[str, Any] | None = None, per_page: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list: pages follow Procore's `Link` (`next`) and stop at its `Total`.

        An endpoint that is not paginated (no `Link`, no `Total`) yields its one page.
        """
        page = 1
        seen = 0
        while True:
            response = await self.request(
                "GET", path, company_id, params={**(params or {}), "page": page, "per_page": per_page}
            )
            items = response.json()
            if not isinstance(items, list):
                raise ProcoreError(response.status_code, f"expected a list from {path}, got {type(items).__name__}")
            for item in items:
                yield item
            seen += len(items)
            total = _int_header(response, "total")
            if not items or "next" not in response.links or (total is not None and seen >= total):
                return
            page += 1


def _int_header(response: httpx.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None


def _safe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, ProcoreError):
        return error.transient
    return isinstance(error, httpx.TransportError)
