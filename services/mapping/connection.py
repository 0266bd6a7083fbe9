"""Use cases of the Procore connection: store new tokens, disconnect, fresh tokens.

The mapping service is the only owner of an account's tokens. Refresh tokens are single use and
rotate, so every refresh happens under the account's lock and a row lock on its connection: two
callers — in one instance or in several — never spend the same refresh token, and the rotated pair
is committed before anyone uses it. A status change that a refresh causes (Procore refused the grant)
is written to the outbox in the same transaction as the status.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from services.mapping.adapters import changes as changes_out
from services.mapping.adapters import connections as store
from services.mapping.adapters import repository as repo
from services.mapping.adapters.changes import Change
from services.mapping.adapters.connections import StoredConnection, TokenCipher
from shared.events import ConnectionStatus, SetupChanged
from shared.procore import ConnectionToken, OAuthApp, OAuthError, OAuthTokens, ProcoreClient


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
    changes_topic: str
    """mapping.changes: where the outbox relay sends what `emit` queues."""
    notify: Callable[[], None]
    """Wakes the outbox relay after a commit that queued changes (it would find them at its next poll anyway)."""
    refresh_margin_s: float = 300.0
    """Refresh this long before expiry, so every token handed out lives at least this long."""

    async def emit(self, conn: asyncpg.Connection, changes: Sequence[Change]) -> None:
        """Queue changes in the caller's transaction (sent only if it commits)."""
        await changes_out.emit(conn, self.changes_topic, changes)


async def setup_changed(conn: asyncpg.Connection, account_id: str, status: ConnectionStatus | None) -> SetupChanged:
    setup = await repo.read_setup(conn, account_id)
    return SetupChanged(
        account_id=account_id,
        procore_company_id=setup.procore_company_id if setup else None,
        enabled_modules=setup.enabled_modules if setup else [],
        two_way=setup.two_way if setup else False,
        connection=status,
    )


def _connected(stored: StoredConnection | None, account_id: str) -> StoredConnection:
    if stored is None or stored.status is ConnectionStatus.DISCONNECTED:
        raise NotConnected(f"Procore is not connected for account {account_id}")
    if stored.status is ConnectionStatus.NEEDS_REAUTHORIZATION:
        raise NeedsReauthorization(stored.message or "Procore needs to be connected again")
    return stored


def _still_good(deps: ConnectionDeps, stored: StoredConnection, force_refresh: bool, rejected: str | None) -> bool:
    expires = stored.expires_at.timestamp() if stored.expires_at else 0.0
    fresh = stored.access_token is not None and expires - deps.refresh_margin_s > time.time()
    rejected_current = force_refresh and (rejected is None or rejected == stored.access_token)
    return fresh and not rejected_current


async def _token_of(conn: asyncpg.Connection, stored: StoredConnection) -> ConnectionToken:
    assert stored.access_token is not None and stored.expires_at is not None
    setup = await repo.read_setup(conn, stored.account_id)
    company = setup.procore_company_id if setup else None
    return ConnectionToken(stored.access_token, stored.expires_at.timestamp(), company)


async def access_token(
    deps: ConnectionDeps, account_id: str, force_refresh: bool = False, rejected: str | None = None
) -> ConnectionToken:
    """A token for the account's Procore company, refreshed first when it is close to expiry or was rejected.

    `force_refresh` with `rejected`: refresh only if the stored token is still the one Procore
    rejected (another caller may have refreshed it meanwhile).
    """
    async with deps.pool.acquire() as conn:
        # Most calls find a fresh token: no lock needed to hand out what is committed.
        seen = _connected(await store.read(conn, deps.cipher, account_id), account_id)
        if _still_good(deps, seen, force_refresh, rejected):
            return await _token_of(conn, seen)
        async with conn.transaction():
            await repo.lock_account(conn, account_id)
            stored = _connected(await store.lock(conn, deps.cipher, account_id), account_id)
            if _still_good(deps, stored, force_refresh, rejected):
                return await _token_of(conn, stored)  # another caller refreshed it while we waited
            try:
                tokens = await _renew(deps.oauth, stored.grant_type, stored.refresh_token)
            except OAuthError as error:
                if not error.needs_reauthorization:
                    raise
                refused = error
                await store.set_status(conn, account_id, ConnectionStatus.NEEDS_REAUTHORIZATION, error.message)
                await deps.emit(conn, [await setup_changed(conn, account_id, ConnectionStatus.NEEDS_REAUTHORIZATION)])
            else:
                await store.save_refreshed(conn, deps.cipher, account_id, tokens)
                setup = await repo.read_setup(conn, account_id)
                company = setup.procore_company_id if setup else None
                return ConnectionToken(tokens.access_token, tokens.expires_at, company)
    # The status change and its event are committed together: wake the relay, then fail this caller.
    deps.notify()
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


async def store_tokens(
    deps: ConnectionDeps,
    command_id: UUID,
    account_id: str,
    grant_type: str,
    obtain: Callable[[], Awaitable[OAuthTokens]],
    requested_by: str,
) -> None:
    """Obtain and store the tokens of a new connection, unless this command already stored them.

    An authorization code works once: the tokens are committed as soon as Procore issued them, so a
    command retried after a later step failed (Procore or the database unavailable) resumes from them.
    Under the account's lock, so a command delivered twice at once spends its code once.
    """
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock_account(conn, account_id)
        stored = await store.read(conn, deps.cipher, account_id)
        if stored is not None and stored.connect_command == command_id:
            return
        tokens = await obtain()
        await store.save_new(conn, deps.cipher, account_id, grant_type, tokens, requested_by, command_id)


async def adopt_companies(
    conn: asyncpg.Connection,
    account_id: str,
    grant_type: str,
    reachable: list[tuple[int, str, bool]],
    requested_by: str,
) -> tuple[list[Change], str]:
    """Finish connecting (caller's transaction, account locked): store the companies the connection reaches,
    choose the company when there is only one; returns the change to emit and the outcome's message."""
    await store.save_companies(conn, account_id, reachable)
    setup = await repo.read_setup(conn, account_id)
    chosen = setup.procore_company_id if setup else None
    note = ""
    if chosen is None and len(reachable) == 1:
        chosen = reachable[0][0]
        modules, two_way = (setup.enabled_modules, setup.two_way) if setup else ([], False)
        await repo.save_setup(conn, account_id, chosen, modules, two_way, requested_by)
        note = f"; company {reachable[0][1]} chosen (the only one)"
    changed = await setup_changed(conn, account_id, ConnectionStatus.CONNECTED)
    names = ", ".join(name for _, name, _ in reachable) or "none"
    return [changed], f"connected to Procore ({grant_type}); companies: {names}{note}"


async def disconnect(deps: ConnectionDeps, conn: asyncpg.Connection, account_id: str) -> list[Change]:
    """Revoke and forget the tokens (caller's transaction, account locked); returns the change to emit.

    Revoking happens before the tokens are wiped, in the same transaction: a crash in between leaves
    them stored, and the redelivered command revokes again (revoking is idempotent).
    """
    stored = await store.lock(conn, deps.cipher, account_id)
    if stored is None or stored.status is ConnectionStatus.DISCONNECTED:
        return []
    for token in (stored.refresh_token, stored.access_token):
        if token:
            await deps.oauth.revoke(token)
    await store.set_status(conn, account_id, ConnectionStatus.DISCONNECTED, None)
    return [await setup_changed(conn, account_id, ConnectionStatus.DISCONNECTED)]
