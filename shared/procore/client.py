"""An async Procore REST client: OAuth tokens, company header, pagination, rate limits, retries.

One pooled httpx client serves all companies. Transient failures (connection errors,
timeouts, 5xx, 429) are retried with exponential backoff and jitter, bounded by
`max_attempts`; permanent 4xx raise `ProcoreError` carrying Procore's own message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from shared.procore.ratelimit import RateLimiter

log = logging.getLogger(__name__)

REST = "/rest/v1.0"


class ProcoreError(Exception):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"Procore answered {status}: {message}")
        self.status = status
        self.message = message
        self.body = body

    @property
    def transient(self) -> bool:
        return self.status in (401, 408, 429) or self.status >= 500


def error_message(response: httpx.Response) -> str:
    """Procore's error bodies vary by endpoint: take the first meaningful text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "error", "errors", "reason"):
            value = body.get(key)
            if value:
                return value if isinstance(value, str) else str(value)[:500]
    return str(body)[:500]


@dataclass
class Token:
    access_token: str
    expires_at: float


class TokenSource:
    """Client-credentials tokens, fetched once and renewed shortly before they expire."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        login_url: str,
        client_id: str,
        client_secret: str,
        refresh_margin_s: float = 300.0,
    ) -> None:
        self._http = http
        self._login_url = login_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._margin = refresh_margin_s
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    async def get(self, force_refresh: bool = False) -> str:
        async with self._lock:
            if force_refresh or self._token is None or self._token.expires_at - self._margin < time.time():
                self._token = await self._fetch()
            return self._token.access_token

    async def _fetch(self) -> Token:
        response = await self._http.post(
            f"{self._login_url}/oauth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
        )
        if response.status_code != 200:
            raise ProcoreError(response.status_code, error_message(response))
        body = response.json()
        return Token(body["access_token"], time.time() + float(body.get("expires_in", 5400)))


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
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self.limiter = limiter or RateLimiter()
        self._max_attempts = max_attempts
        self._max_wait_s = max_wait_s

    async def request(
        self,
        method: str,
        path: str,
        company_id: int,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """One logical call, retried on transient failures; raises ProcoreError on a permanent one."""
        force_refresh = False
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=self._max_wait_s),
            retry=retry_if_exception(_is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self.limiter.acquire(company_id)
                token = await self._tokens(company_id, force_refresh)
                response = await self._http.request(
                    method,
                    f"{self._base}{path}",
                    params=params,
                    json=json,
                    headers={"Authorization": f"Bearer {token}", "Procore-Company-Id": str(company_id)},
                )
                self.limiter.observe(company_id, response.status_code, response.headers)
                if response.status_code == 401:
                    force_refresh = True
                if response.status_code >= 400:
                    raise ProcoreError(response.status_code, error_message(response), _safe_json(response))
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_json(self, path: str, company_id: int, params: dict[str, Any] | None = None) -> Any:
        return (await self.request("GET", path, company_id, params=params)).json()

    async def paginate(
        self, path: str, company_id: int, params: dict[str, Any] | None = None, per_page: int = 1000
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list, following pages until Procore's `Link` has no `next`."""
        page = 1
        while True:
            response = await self.request(
                "GET", path, company_id, params={**(params or {}), "page": page, "per_page": per_page}
            )
            items = response.json()
            for item in items:
                yield item
            if "next" not in response.links or not items:
                return
            page += 1


def _safe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, ProcoreError):
        return error.transient
    return isinstance(error, httpx.TransportError)
