"""The mapping service's internal HTTP API, as the gateway uses it to connect an account to Procore.

Secrets that obtain a connection — the OAuth authorization code, a customer's client secret — go this way
(Bearer INTERNAL_API_TOKEN, in the request body), never through Kafka, where dead-letter topics and traces
would keep them. Only URLs are traced (httpx instrumentation), and these carry nothing secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx

from shared.events import Module
from shared.procore.errors import error_message


class MappingRefused(Exception):
    """The mapping service refused the request; `status` is its answer (403 permission, 400 the reason)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MappingUnavailable(Exception):
    """The mapping service (or Procore behind it) cannot answer now: try again."""


@dataclass(frozen=True)
class Authorization:
    authorize_url: str
    browser_nonce: str
    expires_in: int


class MappingInternal:
    def __init__(self, http: httpx.AsyncClient, base_url: str, token: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = token

    async def start_authorization(
        self, account_id: str, user_id: str, permissions: list[str], redirect_uri: str
    ) -> Authorization:
        body = {"account_id": account_id, "user_id": user_id, "permissions": permissions, "redirect_uri": redirect_uri}
        data = await self._post("/internal/oauth/start", body)
        return Authorization(str(data["authorize_url"]), str(data["browser_nonce"]), int(data["expires_in"]))

    async def complete_authorization(self, state: str, browser_nonce: str, code: str) -> UUID:
        data = await self._post(
            "/internal/oauth/complete", {"state": state, "browser_nonce": browser_nonce, "code": code}
        )
        return UUID(str(data["command_id"]))

    async def connect_service_account(
        self,
        account_id: str,
        user_id: str,
        permissions: list[str],
        client_id: str,
        client_secret: str,
        company_id: int | None = None,
    ) -> UUID:
        body: dict[str, Any] = {
            "procore_company_id": company_id,
            "account_id": account_id,
            "user_id": user_id,
            "permissions": permissions,
            "client_id": client_id,
            "client_secret": client_secret,
        }
        data = await self._post("/internal/procore/service-account", body)
        return UUID(str(data["command_id"]))

    async def procore_records(
        self, account_id: str, company_id: int, refs: list[tuple[Module, int, int]]
    ) -> dict[int, dict[str, Any] | None]:
        """Procore id → the record as Procore holds it now (None: Procore has none), read with the account's
        connection. `refs`: (module, Procore project, Procore id)."""
        if not refs:
            return {}
        body = {
            "account_id": account_id,
            "procore_company_id": company_id,
            "records": [{"module": m.value, "procore_project_id": p, "procore_id": i} for m, p, i in refs],
        }
        data = await self._post("/internal/procore/records", body)
        return {int(r["procore_id"]): (r["record"] if r["found"] else None) for r in data["records"]}

    async def webhook_delivery(self, authorization: str | None, event: Any) -> str:
        """Hand a Procore webhook delivery to the mapping service (it holds the hooks' secrets); its outcome.
        `MappingRefused` 401: not a hook of ours; 400: not a Procore event."""
        if not self._base or not self._token:
            raise MappingUnavailable("the gateway is not configured to reach the mapping service (MAPPING_URL)")
        try:
            response = await self._http.post(
                f"{self._base}/internal/procore/webhook",
                json={"authorization": authorization, "event": event},
                headers={"Authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError as error:
            raise MappingUnavailable(f"the mapping service did not answer: {type(error).__name__}") from error
        if response.status_code in (400, 401, 422):
            raise MappingRefused(response.status_code, error_message(response))
        if response.status_code >= 300:
            raise MappingUnavailable(f"the mapping service answered {response.status_code}: {error_message(response)}")
        return str(response.json().get("outcome", ""))

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if not self._base or not self._token:
            raise MappingUnavailable("the gateway is not configured to reach the mapping service (MAPPING_URL)")
        try:
            response = await self._http.post(
                f"{self._base}{path}", json=body, headers={"Authorization": f"Bearer {self._token}"}
            )
        except httpx.HTTPError as error:
            raise MappingUnavailable(f"the mapping service did not answer: {type(error).__name__}") from error
        if response.status_code >= 500 or response.status_code in (401, 404, 405):
            # 401/404/405: a misconfigured gateway (token, URL), not something the user can fix.
            raise MappingUnavailable(f"the mapping service answered {response.status_code}: {error_message(response)}")
        if response.status_code >= 400:
            raise MappingRefused(response.status_code, error_message(response))
        data: dict[str, Any] = response.json()
        return data
