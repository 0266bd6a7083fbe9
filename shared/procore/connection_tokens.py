"""Access tokens of an account's Procore connection, served by the mapping service (the tokens' one owner).

Refresh tokens are single use and rotate, so only the mapping service refreshes them. Other
services ask its internal API (its own port, never the public one): `POST
{mapping}/internal/procore-token {account_id, procore_company_id}` with the shared `INTERNAL_API_TOKEN`,
and get `{access_token, expires_at, procore_company_id}`. Every request names the company about to be
called: the mapping service refuses a company not bound to the account (403 `company_not_bound`),
which fails that company's entries for good (`CompanyNotBound`). This class caches each
(account, company) token until shortly before it expires and, after Procore answered 401, asks for a
forced refresh naming the rejected token (so concurrent callers that saw the same 401 cause one
refresh, not one each).

    tokens = ConnectionTokens(http, "http://mapping:8093", internal_token)
    client = procore.with_tokens(tokens.provider(account_id))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from shared.procore.client import TokenProvider
from shared.procore.errors import ProcoreError, error_message
from shared.transient import Transient

TOKEN_PATH = "/internal/procore-token"


class NotConnected(ProcoreError):
    """The account has no usable Procore connection (never connected, disconnected, or needs reauthorization)."""


class CompanyNotBound(NotConnected):
    """The company is not bound to the account (the mapping service said so): nothing is sent there, ever."""


class TokensUnavailable(Transient):
    """The mapping service's token endpoint could not give a token right now (unreachable, 5xx, 429): try later.

    Not a `ProcoreError`: Procore said nothing, so nothing about the entry is known to be wrong."""


@dataclass(frozen=True)
class ConnectionToken:
    access_token: str
    expires_at: float
    """Unix seconds."""
    procore_company_id: int | None


class ConnectionTokens:
    def __init__(
        self,
        http: httpx.AsyncClient,
        mapping_url: str,
        internal_token: str,
        margin_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._url = mapping_url.rstrip("/") + TOKEN_PATH
        self._internal_token = internal_token
        self._margin = margin_s
        self._clock = clock
        self._cache: dict[tuple[str, int | None], ConnectionToken] = {}
        self._locks: dict[tuple[str, int | None], asyncio.Lock] = {}

    async def get(self, account_id: str, company_id: int | None, force_refresh: bool = False) -> ConnectionToken:
        """A token to call `company_id` with (None: the company Setup chose), valid for at least `margin_s`;
        `force_refresh` after Procore rejected the cached one."""
        key = (account_id, company_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if cached is not None and not force_refresh and cached.expires_at - self._margin > self._clock():
                return cached
            rejected = cached.access_token if (force_refresh and cached is not None) else None
            token = await self._fetch(account_id, company_id, force_refresh, rejected)
            self._cache[key] = token
            return token

    def forget(self, account_id: str) -> None:
        for key in [key for key in self._cache if key[0] == account_id]:
            self._cache.pop(key, None)

    def provider(self, account_id: str) -> TokenProvider:
        """A `ProcoreClient` token provider bound to one account's connection (0: a call without a company)."""

        async def token_for(company_id: int, force_refresh: bool) -> str:
            return (await self.get(account_id, company_id or None, force_refresh)).access_token

        return token_for

    async def _fetch(
        self, account_id: str, company_id: int | None, force_refresh: bool, rejected: str | None
    ) -> ConnectionToken:
        body: dict[str, object] = {"account_id": account_id, "force_refresh": force_refresh}
        if company_id is not None:
            body["procore_company_id"] = company_id
        if rejected is not None:
            body["rejected_token"] = rejected
        try:
            response = await self._http.post(
                self._url, json=body, headers={"Authorization": f"Bearer {self._internal_token}"}
            )
        except httpx.TransportError as error:
            raise TokensUnavailable(f"the token endpoint could not be reached ({type(error).__name__})") from error
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise TokensUnavailable(f"the token endpoint answered {response.status_code}: {error_message(response)}")
        if response.status_code in (404, 409):
            self.forget(account_id)
            raise NotConnected(response.status_code, error_message(response))
        if response.status_code == 403 and _error_code(response) == "company_not_bound":
            self._cache.pop((account_id, company_id), None)
            raise CompanyNotBound(403, f"Procore company {company_id} is not connected to this account")
        if response.status_code != 200:
            raise ProcoreError(response.status_code, error_message(response))
        data = response.json()
        if company_id is not None and data.get("procore_company_id") not in (None, company_id):
            answered = data.get("procore_company_id")
            raise CompanyNotBound(403, f"the token endpoint answered for company {answered}, not {company_id}")
        return ConnectionToken(
            access_token=str(data["access_token"]),
            expires_at=float(data["expires_at"]),
            procore_company_id=data.get("procore_company_id"),
        )


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None
