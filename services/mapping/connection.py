"""Use cases of the Procore connection: obtain tokens by proof, hand out tokens for bound companies only, disconnect.

The mapping service is the only owner of an account's tokens. Refresh tokens are single use and
rotate, so every refresh happens under the account's lock and a row lock on its connection: two
callers — in one instance or in several — never spend the same refresh token, and the rotated pair
is committed before anyone uses it. A status change that a refresh causes (Procore refused the grant)
is written to the outbox in the same transaction as the status.

Secrets that obtain a connection (an authorization code, a customer's client secret) come over the
internal HTTP API, never over Kafka: tokens are obtained there, stored, and a `CompleteProcoreConnection`
command (no secret in it) is queued in the same transaction to prove and bind the companies.
Every token handed out — to this service's own Procore calls or to the publisher — is for a company
bound to the account (defence in depth: checked on every call, not only when Setup chose the company).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg

from services.mapping import domain, proof
from services.mapping.adapters import bindings
from services.mapping.adapters import changes as changes_out
from services.mapping.adapters import connections as store
from services.mapping.adapters import repository as repo
from services.mapping.adapters.changes import Change
from services.mapping.adapters.connections import StoredConnection, TokenCipher
from shared.events import CompleteProcoreConnection, ConnectionStatus, SetupChanged
from shared.outbox import OutboxMessage, add_to_outbox, trace_headers
from shared.procore import ConnectionToken, OAuthApp, OAuthError, OAuthTokens, ProcoreClient
from shared.procore.oauth import Pkce


class NotConnected(Exception):
    """The account has no Procore connection (never connected, or disconnected)."""


class NeedsReauthorization(Exception):
    """Procore refused the stored grant: an administrator must connect again."""


class NotBound(Exception):
    """A token or a Procore call for a company that is not bound to the account: refused, whoever asks."""


class Refused(Exception):
    """A connection request over the internal API that is not allowed; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
    commands_topic: str = ""
    """mapping.commands: where a new connection's CompleteProcoreConnection goes (through the outbox)."""
    pkce: bool = False
    """Send a PKCE challenge (RFC 7636 S256) with every authorization request."""
    state_ttl_s: float = 600.0
    """How long an authorization request (its state) may be completed."""

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


async def _check_bound(conn: asyncpg.Connection, account_id: str, company_id: int | None) -> None:
    """Every token is for a company bound to the account; None only for the company-less calls that prove it."""
    if company_id is None:
        return
    if await bindings.holder_of(conn, company_id) != account_id:
        raise NotBound(f"Procore company {company_id} is not bound to account {account_id}")


async def access_token(
    deps: ConnectionDeps,
    account_id: str,
    company_id: int | None,
    force_refresh: bool = False,
    rejected: str | None = None,
) -> ConnectionToken:
    """A token of the account's connection to use with `company_id` — refused unless that company is bound to
    the account — refreshed first when it is close to expiry or was rejected.

    `force_refresh` with `rejected`: refresh only if the stored token is still the one Procore
    rejected (another caller may have refreshed it meanwhile).
    """
    async with deps.pool.acquire() as conn:
        # Most calls find a fresh token: no lock needed to hand out what is committed.
        seen = _connected(await store.read(conn, deps.cipher, account_id), account_id)
        await _check_bound(conn, account_id, company_id)
        if _still_good(deps, seen, force_refresh, rejected):
            assert seen.access_token is not None and seen.expires_at is not None
            return ConnectionToken(seen.access_token, seen.expires_at.timestamp(), company_id)
        async with conn.transaction():
            await repo.lock_account(conn, account_id)
            stored = _connected(await store.lock(conn, deps.cipher, account_id), account_id)
            if _still_good(deps, stored, force_refresh, rejected):
                assert stored.access_token is not None and stored.expires_at is not None
                return ConnectionToken(stored.access_token, stored.expires_at.timestamp(), company_id)
            try:
                tokens = await _renew(deps.oauth, stored)
            except OAuthError as error:
                if not error.needs_reauthorization:
                    raise
                refused = error
                await store.set_status(conn, account_id, ConnectionStatus.NEEDS_REAUTHORIZATION, error.message)
                await deps.emit(conn, [await setup_changed(conn, account_id, ConnectionStatus.NEEDS_REAUTHORIZATION)])
            else:
                await store.save_refreshed(conn, deps.cipher, account_id, tokens)
                return ConnectionToken(tokens.access_token, tokens.expires_at, company_id)
    # The status change and its event are committed together: wake the relay, then fail this caller.
    deps.notify()
    raise NeedsReauthorization(f"Procore refused the stored authorization: {refused.message}")


def _oauth_of(app: OAuthApp, stored: StoredConnection) -> OAuthApp:
    """The client that obtained the connection: the customer's own service account, or the app (user consent)."""
    if stored.grant_type == "client_credentials":
        if stored.client_id is None or stored.client_secret is None:
            raise OAuthError(400, "no service account is stored: connect again", "invalid_client")
        return app.for_client(stored.client_id, stored.client_secret)
    return app


async def _renew(app: OAuthApp, stored: StoredConnection) -> OAuthTokens:
    if stored.grant_type == "client_credentials":
        # The customer's credentials, never the app's shared ones (those prove nothing and reach everyone).
        return await _oauth_of(app, stored).client_credentials()
    if stored.refresh_token is None:
        raise OAuthError(400, "no refresh token is stored", "invalid_grant")
    return await app.refresh(stored.refresh_token)


class AccountTokens:
    """A `ProcoreClient` token provider for one account and one company bound to it (in-process).

    Checked on every call: the call is for that company (`ProcoreClient` names the company it sends in
    `Procore-Company-Id`; 0 for the company-less calls), and the company is still bound to the account.
    """

    def __init__(self, deps: ConnectionDeps, account_id: str, company_id: int | None) -> None:
        self._deps = deps
        self._account_id = account_id
        self._company_id = company_id
        self._last: str | None = None

    async def __call__(self, company_id: int, force_refresh: bool) -> str:
        if company_id != (self._company_id or 0):
            raise NotBound(
                f"a Procore call for company {company_id or 'none'} with the tokens of account {self._account_id} "
                f"for company {self._company_id or 'none'}: refused"
            )
        rejected = self._last if force_refresh else None
        token = await access_token(self._deps, self._account_id, self._company_id, force_refresh, rejected)
        self._last = token.access_token
        return token.access_token


def client_for(deps: ConnectionDeps, account_id: str, company_id: int | None) -> ProcoreClient:
    """Procore calls for one bound company of the account (None: only the company-less calls of the proof)."""
    return deps.procore.with_tokens(AccountTokens(deps, account_id, company_id))


# --- connecting: the secrets come over HTTP, the companies are proven and bound by a command ----------


@dataclass(frozen=True)
class Requester:
    account_id: str
    user_id: str
    permissions: list[str] | None


@dataclass(frozen=True)
class Authorization:
    authorize_url: str
    browser_nonce: str
    """For an HttpOnly cookie in the browser that starts the flow; the callback must bring it back."""
    expires_in: int


def _require_setup(who: Requester) -> None:
    refusal = domain.refusal_for_permission(domain.Permission.SETUP, who.permissions)
    if refusal is not None:
        raise Refused(403, refusal)


async def start_authorization(deps: ConnectionDeps, who: Requester, redirect_uri: str) -> Authorization:
    """A new authorization request: a random state (single use, short-lived), a nonce for the browser, and a
    PKCE verifier when enabled; only hashes of the state and nonce are stored, the verifier encrypted."""
    _require_setup(who)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    pkce = Pkce.new() if deps.pkce else None
    async with deps.pool.acquire() as conn:
        await bindings.save_attempt(
            conn,
            proof.digest(state),
            proof.digest(nonce),
            who.account_id,
            who.user_id,
            who.permissions or [],
            redirect_uri,
            deps.cipher.encrypt(pkce.verifier, who.account_id) if pkce else None,
            deps.state_ttl_s,
        )
    url = deps.oauth.authorize_url(redirect_uri, state, pkce.challenge if pkce else None)
    return Authorization(url, nonce, int(deps.state_ttl_s))


async def complete_authorization(deps: ConnectionDeps, state: str, browser_nonce: str, code: str) -> UUID:
    """The callback: the state names an attempt of this browser, used once, in time; then the code is exchanged
    (with the PKCE verifier) and the tokens stored. Returns the id of the command that proves and binds."""
    async with deps.pool.acquire() as conn, conn.transaction():
        # Committed whatever comes next: a state works once, even if the exchange fails.
        used = await bindings.use_attempt(conn, proof.digest(state))
    refusal = proof.callback_refusal(used[0].attempt if used else None, browser_nonce, used[1] if used else _now())
    if refusal is not None:
        raise Refused(403 if refusal is proof.CallbackRefusal.OTHER_BROWSER else 400, refusal.value)
    assert used is not None
    attempt = used[0]
    who = Requester(attempt.account_id, attempt.requested_by, attempt.permissions)
    _require_setup(who)
    verifier = deps.cipher.decrypt(attempt.code_verifier, attempt.account_id) if attempt.code_verifier else None
    try:
        tokens = await deps.oauth.exchange_code(code, attempt.redirect_uri, verifier)
    except OAuthError as error:
        if error.transient:
            raise
        raise Refused(400, f"Procore refused the authorization: {error.message}") from error
    return await _store_new(deps, who, "authorization_code", tokens, None)


async def connect_service_account(deps: ConnectionDeps, who: Requester, client_id: str, client_secret: str) -> UUID:
    """Connect with the customer's own service account: its client credentials reach only the customer's
    companies, which is the proof. The app's shared credentials are refused (they reach every customer)."""
    _require_setup(who)
    if secrets.compare_digest(client_id.encode(), deps.oauth.client_id.encode()):
        raise Refused(400, proof.APP_CREDENTIALS_PROVE_NOTHING)
    try:
        tokens = await deps.oauth.for_client(client_id, client_secret).client_credentials()
    except OAuthError as error:
        if error.transient:
            raise
        raise Refused(400, f"Procore refused these credentials: {error.message}") from error
    return await _store_new(deps, who, "client_credentials", tokens, (client_id, client_secret))


async def _store_new(
    deps: ConnectionDeps, who: Requester, grant: str, tokens: OAuthTokens, client: tuple[str, str] | None
) -> UUID:
    """Store the tokens and queue the command that proves and binds their companies, in one transaction."""
    finish = CompleteProcoreConnection(
        event_id=uuid4(), account_id=who.account_id, requested_by=who.user_id, permissions=who.permissions
    )
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock_account(conn, who.account_id)
        await store.save_new(conn, deps.cipher, who.account_id, grant, tokens, who.user_id, finish.event_id, client)
        message = OutboxMessage(deps.commands_topic, who.account_id, finish.model_dump_json(), trace_headers())
        await add_to_outbox(conn, [message])
    deps.notify()
    return finish.event_id


def _now() -> datetime:
    return datetime.now(UTC)


async def bind_proven(
    conn: asyncpg.Connection,
    cmd: CompleteProcoreConnection,
    grant_type: str,
    reached: Sequence[proof.ReachedCompany],
) -> tuple[list[Change], str]:
    """Bind what the connection proved (caller's transaction, account locked): every company it reaches that no
    other account holds. With exactly one company and none chosen, it is chosen. Returns the change and message."""
    account = cmd.account_id
    plan = proof.plan_bindings(account, reached, await bindings.holders(conn, [c.procore_company_id for c in reached]))
    evidence = proof.PROOF_OF_GRANT[grant_type]
    bound_now = await bindings.bind(conn, account, plan.bind, evidence, cmd.event_id, cmd.requested_by)
    await bindings.rename(conn, account, plan.kept)
    lost = [c for c in plan.bind if c.procore_company_id not in bound_now]  # bound by another account meanwhile
    mine = [c for c in [*plan.kept, *plan.bind] if c not in lost]
    setup = await repo.read_setup(conn, account)
    chosen: str | None = None
    if (setup is None or setup.procore_company_id is None) and len(mine) == 1:
        chosen = mine[0].name
        modules, two_way = (setup.enabled_modules, setup.two_way) if setup else ([], False)
        await repo.save_setup(conn, account, mine[0].procore_company_id, modules, two_way, cmd.requested_by)
    changed = await setup_changed(conn, account, ConnectionStatus.CONNECTED)
    names = sorted(c.name for c in mine)
    return [changed], proof.connected_message(grant_type, names, len(plan.taken) + len(lost), chosen)


async def disconnect(deps: ConnectionDeps, conn: asyncpg.Connection, account_id: str) -> list[Change]:
    """Revoke and forget the tokens (caller's transaction, account locked); returns the change to emit.

    Revoking happens before the tokens are wiped, in the same transaction: a crash in between leaves
    them stored, and the redelivered command revokes again (revoking is idempotent).
    """
    stored = await store.lock(conn, deps.cipher, account_id)
    if stored is None or stored.status is ConnectionStatus.DISCONNECTED:
        return []
    # Tokens are revoked by the client they were issued to (connections older than service accounts: the app).
    revoker = _oauth_of(deps.oauth, stored) if stored.client_secret else deps.oauth
    for token in (stored.refresh_token, stored.access_token):
        if token:
            await revoker.revoke(token)
    await store.set_status(conn, account_id, ConnectionStatus.DISCONNECTED, None)
    return [await setup_changed(conn, account_id, ConnectionStatus.DISCONNECTED)]
