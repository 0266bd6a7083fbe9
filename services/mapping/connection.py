"""Use cases of the Procore connection: connect (OAuth code or client credentials), disconnect, fresh tokens.

The mapping service is the only owner of an account's tokens. Refresh tokens are single use and
rotate, so every refresh happens under a row lock on the account's connection: two callers never
spend the same refresh token, and the rotated pair is committed before anyone uses it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from services.mapping.adapters import connections as store
from services.mapping.adapters import procore_lists
from services.mapping.adapters import repository as repo
from services.mapping.adapters.connections import TokenCipher
from shared.events import ConnectionStatus, MappingChanged, SetupChanged
from shared.procore import ConnectionToken, OAuthApp, OAuthError, OAuthTokens, ProcoreClient

Change = SetupChanged | MappingChanged
Publish = Callable[[Sequence[Change]], Awaitable[None]]


class NotConnected(Exception):
    """The account has no Procore connection (never connected, or disconnected)."""


class NeedsReauthorization(Exception):
    """Procore refused the stored grant: an administrator must connect again."""


@dataclass
class ConnectionDeps:
    pool: asyncpg.Pool
    cipher: TokenCipher
    oauth: OAuthApp
    procore: ProcoreClient
    publish: Publish
    refresh_margin_s: float = 300.0
    """Refresh this long before expiry, so every token handed out lives at least this long."""


async def setup_changed(conn: asyncpg.Connection, account_id: str, status: ConnectionStatus | None) -> SetupChanged:
    setup = await repo.read_setup(conn, account_id)
    return SetupChanged(
        account_id=account_id,
        procore_company_id=setup.procore_company_id if setup else None,
        enabled_modules=setup.enabled_modules if setup else [],
        two_way=setup.two_way if setup else False,
        connection=status,
    )


async def access_token(
    deps: ConnectionDeps, account_id: str, force_refresh: bool = False, rejected: str | None = None
) -> ConnectionToken:
    """A token for the account's Procore company, refreshed first when it is close to expiry or was rejected.

    `force_refresh` with `rejected`: refresh only if the stored token is still the one Procore
    rejected (another caller may have refreshed it meanwhile).
    """
    async with deps.pool.acquire() as conn, conn.transaction():
        stored = await store.lock(conn, deps.cipher, account_id)
        if stored is None or stored.status is ConnectionStatus.DISCONNECTED:
            raise NotConnected(f"Procore is not connected for account {account_id}")
        if stored.status is ConnectionStatus.NEEDS_REAUTHORIZATION:
            raise NeedsReauthorization(stored.message or "Procore needs to be connected again")
        company = (await repo.read_setup(conn, account_id) or repo.StoredSetup(None, [], False)).procore_company_id
        expires = stored.expires_at.timestamp() if stored.expires_at else 0.0
        fresh = stored.access_token is not None and expires - deps.refresh_margin_s > time.time()
        rejected_current = force_refresh and (rejected is None or rejected == stored.access_token)
        if fresh and not rejected_current:
            assert stored.access_token is not None
            return ConnectionToken(stored.access_token, expires, company)
        try:
            tokens = await _renew(deps.oauth, stored.grant_type, stored.refresh_token)
        except OAuthError as error:
            if not error.needs_reauthorization:
                raise
            refused = error
            await store.set_status(conn, account_id, ConnectionStatus.NEEDS_REAUTHORIZATION, error.message)
            changed = await setup_changed(conn, account_id, ConnectionStatus.NEEDS_REAUTHORIZATION)
        else:
            await store.save_refreshed(conn, deps.cipher, account_id, tokens)
            return ConnectionToken(tokens.access_token, tokens.expires_at, company)
    # The status change is committed: say so, then fail this caller.
    await deps.publish([changed])
    raise NeedsReauthorization(f"Procore refused the stored authorization: {refused.message}")


async def _renew(oauth: OAuthApp, grant_type: str, refresh_token: str | None) -> OAuthTokens:
    if grant_type == "client_credentials":
        return await oauth.client_credentials()
    if refresh_token is None:
        raise OAuthError(400, "no refresh token is stored", "invalid_grant")
    return await oauth.refresh(refresh_token)


class AccountTokens:
    """A `ProcoreClient` token provider for one account, backed by `access_token` (in-process)."""

    def __init__(self, deps: ConnectionDeps, account_id: str) -> None:
        self._deps = deps
        self._account_id = account_id
        self._last: str | None = None

    async def __call__(self, company_id: int, force_refresh: bool) -> str:
        token = await access_token(self._deps, self._account_id, force_refresh, self._last if force_refresh else None)
        self._last = token.access_token
        return token.access_token


def client_for(deps: ConnectionDeps, account_id: str) -> ProcoreClient:
    return deps.procore.with_tokens(AccountTokens(deps, account_id))


async def connect(
    deps: ConnectionDeps, account_id: str, grant_type: str, tokens: OAuthTokens, requested_by: str
) -> tuple[list[Change], str]:
    """Store a new connection and the companies it reaches; choose the company when there is only one."""

    async def first_token(company_id: int, force_refresh: bool) -> str:
        return tokens.access_token

    reachable = await procore_lists.companies(deps.procore.with_tokens(first_token))
    async with deps.pool.acquire() as conn, conn.transaction():
        await store.save_new(conn, deps.cipher, account_id, grant_type, tokens, requested_by)
        await store.save_companies(conn, account_id, reachable)
        setup = await repo.read_setup(conn, account_id)
        chosen = setup.procore_company_id if setup else None
        note = ""
        if chosen is None and len(reachable) == 1:
            chosen = reachable[0][0]
            await repo.save_setup(
                conn, account_id, chosen, setup.enabled_modules if setup else [], setup.two_way if setup else False,
                requested_by,
            )  # fmt: skip
            note = f"; company {reachable[0][1]} chosen (the only one)"
        changed = await setup_changed(conn, account_id, ConnectionStatus.CONNECTED)
    names = ", ".join(name for _, name, _ in reachable) or "none"
    return [changed], f"connected to Procore ({grant_type}); companies: {names}{note}"


async def disconnect(deps: ConnectionDeps, account_id: str) -> list[Change]:
    async with deps.pool.acquire() as conn, conn.transaction():
        stored = await store.lock(conn, deps.cipher, account_id)
        if stored is None or stored.status is ConnectionStatus.DISCONNECTED:
            return []
        await store.set_status(conn, account_id, ConnectionStatus.DISCONNECTED, None)
        changed = await setup_changed(conn, account_id, ConnectionStatus.DISCONNECTED)
    for token in (stored.refresh_token, stored.access_token):
        if token:
            await deps.oauth.revoke(token)
    return [changed]
