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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import asyncpg
import httpx

from services.mapping import domain, proof
from services.mapping.adapters import bindings, procore_links, setups
from services.mapping.adapters.changes import Change
from services.mapping.adapters.procore_links import StoredProcoreLink
from services.mapping.adapters.store import PgMappingStore
from services.mapping.ports import LinkDeps, MappingStore, Setups
from shared import metrics
from shared.events import CompleteProcoreConnection, ConnectionStatus, SetupChanged
from shared.procore import ConnectionToken, OAuthApp, OAuthError, OAuthTokens, ProcoreClient
from shared.procore.oauth import Pkce
from shared.transient import Transient

if TYPE_CHECKING:
    from services.mapping.deps import MappingDeps


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


async def setup_changed(store: Setups, account_id: str, status: ConnectionStatus | None) -> SetupChanged:
    setup = await store.read_setup(account_id)
    return SetupChanged(
        account_id=account_id,
        procore_company_id=setup.procore_company_id if setup else None,
        enabled_modules=setup.enabled_modules if setup else [],
        two_way=setup.two_way if setup else False,
        connection=status,
    )


def _connected(stored: StoredProcoreLink | None, account_id: str) -> StoredProcoreLink:
    if stored is None or stored.status is ConnectionStatus.DISCONNECTED:
        raise NotConnected(f"Procore is not connected for account {account_id}")
    if stored.status is ConnectionStatus.NEEDS_REAUTHORIZATION:
        raise NeedsReauthorization(stored.message or "Procore needs to be connected again")
    return stored


def _still_good(deps: MappingDeps, stored: StoredProcoreLink, force_refresh: bool, rejected: str | None) -> bool:
    expires = stored.expires_at.timestamp() if stored.expires_at else 0.0
    fresh = stored.access_token is not None and expires - deps.refresh_margin_s > time.time()
    rejected_current = force_refresh and (rejected is None or rejected == stored.access_token)
    return fresh and not rejected_current


async def _check_bound(db: asyncpg.Connection, account_id: str, company_id: int | None) -> None:
    """Every token is for a company bound to the account; None only for the company-less calls that prove it."""
    if company_id is None:
        return
    if await bindings.holder_of(db, company_id) != account_id:
        raise NotBound(f"Procore company {company_id} is not bound to account {account_id}")


async def access_token(
    deps: MappingDeps,
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
    async with deps.pool.acquire() as db:
        # Most calls find a fresh token: no lock needed to hand out what is committed.
        seen = _connected(await procore_links.read(db, deps.cipher, account_id), account_id)
        await _check_bound(db, account_id, company_id)
        if _still_good(deps, seen, force_refresh, rejected):
            assert seen.access_token is not None
            assert seen.expires_at is not None
            return ConnectionToken(seen.access_token, seen.expires_at.timestamp(), company_id)
        async with db.transaction():
            await setups.lock_account(db, account_id)
            stored = _connected(await procore_links.lock(db, deps.cipher, account_id), account_id)
            if _still_good(deps, stored, force_refresh, rejected):
                assert stored.access_token is not None
                assert stored.expires_at is not None
                return ConnectionToken(stored.access_token, stored.expires_at.timestamp(), company_id)
            lost: BaseException | None = None
            try:
                tokens = await _renew(deps.oauth, stored)
            except Exception as error:
                metrics.token_refreshed(stored.grant_type, ok=False)
                if stored.refresh_token is not None and answer_lost(error):
                    # Procore may have rotated the pair already: the stored refresh token is then burnt. Remember
                    # it (committed), so a refusal of that token is explained; the caller retries as for an outage.
                    metrics.REFRESH_ANSWERS_LOST.inc()
                    await procore_links.mark_refresh_answer_lost(db, account_id)
                    lost = error
                elif not isinstance(error, OAuthError) or not error.needs_reauthorization:
                    raise
                else:
                    message = domain.reauthorization_message(
                        error.message, await procore_links.refresh_answer_lost(db, account_id)
                    )
                    await procore_links.set_status(db, account_id, ConnectionStatus.NEEDS_REAUTHORIZATION, message)
                    store = PgMappingStore(db, deps.cipher, deps.changes_topic, deps.commands_topic)
                    changed = await setup_changed(store, account_id, ConnectionStatus.NEEDS_REAUTHORIZATION)
                    await deps.emit(db, [changed])
            else:
                metrics.token_refreshed(stored.grant_type, ok=True)
                await procore_links.save_refreshed(db, deps.cipher, account_id, tokens)
                return ConnectionToken(tokens.access_token, tokens.expires_at, company_id)
    if lost is not None:
        raise Transient(f"the answer to a token refresh was lost ({type(lost).__name__}): try again") from lost
    # The status change and its event are committed together: wake the relay, then fail this caller. From now on
    # every caller is refused at once (`_connected`), without asking Procore: no retry storm.
    deps.notify()
    raise NeedsReauthorization(message)


def answer_lost(error: BaseException) -> bool:
    """A refresh that may have reached Procore without its answer reaching us: sent, then the connection dropped or
    timed out while reading, or the answer arrived cut (not JSON, no token). A refused connection (nothing sent)
    burns nothing; neither does a refusal from Procore (an answer)."""
    if isinstance(error, OAuthError):
        return False
    cut = isinstance(error, ValueError | KeyError)  # a 200 whose body is not a whole token answer
    return cut or isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | httpx.ReadTimeout | httpx.WriteError)


def _oauth_of(app: OAuthApp, stored: StoredProcoreLink) -> OAuthApp:
    """The client that obtained the connection: the customer's own service account, or the app (user consent)."""
    if stored.grant_type == "client_credentials":
        if stored.client_id is None or stored.client_secret is None:
            raise OAuthError(400, "no service account is stored: connect again", "invalid_client")
        return app.for_client(stored.client_id, stored.client_secret)
    return app


async def _renew(app: OAuthApp, stored: StoredProcoreLink) -> OAuthTokens:
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

    def __init__(
        self, deps: MappingDeps, account_id: str, company_id: int | None, proof_header: int | None = None
    ) -> None:
        self._deps = deps
        self._account_id = account_id
        self._company_id = company_id
        self._proof_header = proof_header
        self._last: str | None = None

    async def __call__(self, company_id: int, force_refresh: bool) -> str:
        if company_id == self._proof_header and self._company_id is None:
            company_id = 0  # the proof's company-less call, naming the service account's company as Procore asks
        if company_id != (self._company_id or 0):
            raise NotBound(
                f"a Procore call for company {company_id or 'none'} with the tokens of account {self._account_id} "
                f"for company {self._company_id or 'none'}: refused"
            )
        rejected = self._last if force_refresh else None
        token = await access_token(self._deps, self._account_id, self._company_id, force_refresh, rejected)
        self._last = token.access_token
        return token.access_token


def client_for(
    deps: MappingDeps, account_id: str, company_id: int | None, proof_header: int | None = None
) -> ProcoreClient:
    """Procore calls for one bound company of the account (None: only the company-less calls of the proof, which
    may name `proof_header` in Procore-Company-Id: a service account's company, not bound yet)."""
    return deps.procore.with_tokens(AccountTokens(deps, account_id, company_id, proof_header))


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


async def start_authorization(deps: LinkDeps, who: Requester, redirect_uri: str) -> Authorization:
    """A new authorization request: a random state (single use, short-lived), a nonce for the browser, and a
    PKCE verifier when enabled; only hashes of the state and nonce are stored, the verifier encrypted."""
    _require_setup(who)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    pkce = Pkce.new() if deps.pkce else None
    async with deps.stores.reading() as store:
        await store.save_attempt(
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


async def complete_authorization(deps: LinkDeps, state: str, browser_nonce: str, code: str) -> UUID:
    """The callback: the state names an attempt of this browser, used once, in time; then the code is exchanged
    (with the PKCE verifier) and the tokens stored. Returns the id of the command that proves and binds."""
    async with deps.stores.transaction() as store:
        # Committed whatever comes next: a state works once, even if the exchange fails.
        used = await store.use_attempt(proof.digest(state))
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


async def connect_service_account(
    deps: LinkDeps, who: Requester, client_id: str, client_secret: str, company_id: int | None = None
) -> UUID:
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
    return await _store_new(deps, who, "client_credentials", tokens, (client_id, client_secret), company_id)


async def _store_new(
    deps: LinkDeps,
    who: Requester,
    grant: str,
    tokens: OAuthTokens,
    client: tuple[str, str] | None,
    client_company: int | None = None,
) -> UUID:
    """Store the tokens and queue the command that proves and binds their companies, in one transaction."""
    finish = CompleteProcoreConnection(
        event_id=uuid4(), account_id=who.account_id, requested_by=who.user_id, permissions=who.permissions
    )
    async with deps.stores.transaction() as store:
        await store.lock_account(who.account_id)
        await store.save_new_link(who.account_id, grant, tokens, who.user_id, finish.event_id, client, client_company)
        await store.queue_command(finish)
    deps.notify()
    return finish.event_id


def _now() -> datetime:
    return datetime.now(UTC)


async def bind_proven(
    store: MappingStore,
    cmd: CompleteProcoreConnection,
    grant_type: str,
    reached: Sequence[proof.ReachedCompany],
) -> tuple[list[Change], str]:
    """Bind what the connection proved (caller's transaction, account locked): every company it reaches that no
    other account holds. With exactly one company and none chosen, it is chosen. Returns the change and message."""
    account = cmd.account_id
    plan = proof.plan_bindings(account, reached, await store.holders([c.procore_company_id for c in reached]))
    evidence = proof.PROOF_OF_GRANT[grant_type]
    bound_now = await store.bind(account, plan.bind, evidence, cmd.event_id, cmd.requested_by)
    await store.rename(account, plan.kept)
    lost = [c for c in plan.bind if c.procore_company_id not in bound_now]  # bound by another account meanwhile
    mine = [c for c in [*plan.kept, *plan.bind] if c not in lost]
    setup = await store.read_setup(account)
    chosen: str | None = None
    if (setup is None or setup.procore_company_id is None) and len(mine) == 1:
        chosen = mine[0].name
        modules, two_way = (setup.enabled_modules, setup.two_way) if setup else ([], False)
        await store.save_setup(account, mine[0].procore_company_id, modules, two_way, cmd.requested_by)
    changed = await setup_changed(store, account, ConnectionStatus.CONNECTED)
    names = sorted(c.name for c in mine)
    return [changed], proof.connected_message(grant_type, names, len(plan.taken) + len(lost), chosen)


async def revoke_tokens(oauth: OAuthApp, stored: StoredProcoreLink) -> None:
    """Revoke the link's tokens with the client they were issued to (links older than service accounts: the app)."""
    revoker = _oauth_of(oauth, stored) if stored.client_secret else oauth
    for token in (stored.refresh_token, stored.access_token):
        if token:
            await revoker.revoke(token)
