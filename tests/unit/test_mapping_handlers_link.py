"""Connecting a Procore link over the internal API (start and complete an authorization, connect a customer's
service account) against in-memory fakes (`tests/unit/mapping_fakes.py`: no database, no Procore). The same use
cases run against PostgreSQL and the Procore sandbox in `test_mapping_oauth_security`, `test_mapping_connection`
and `test_mapping_secrets`."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from services.mapping import proof
from services.mapping.procore_link import (
    Authorization,
    Refused,
    Requester,
    complete_authorization,
    connect_service_account,
    start_authorization,
)
from services.mapping.proof import CallbackRefusal
from shared.events import ConnectionStatus
from shared.procore import OAuthError
from tests.unit.mapping_fakes import FakeLinkDeps

ACCOUNT = "acct-1"
ADMIN = Requester(ACCOUNT, "user-1", ["procore.setup"])
REDIRECT = "https://app.example/oauth/callback"


def _state(started: Authorization) -> str:
    return parse_qs(urlsplit(started.authorize_url).query)["state"][0]


async def test_starting_an_authorization_needs_the_setup_permission() -> None:
    deps = FakeLinkDeps()

    with pytest.raises(Refused) as refused:
        await start_authorization(deps, Requester(ACCOUNT, "user-2", ["procore.mapping"]), REDIRECT)

    assert refused.value.status == 403
    assert deps.store.t.attempts == {}


async def test_an_authorization_keeps_only_hashes_of_its_state_and_browser_nonce() -> None:
    deps = FakeLinkDeps(pkce=True)

    started = await start_authorization(deps, ADMIN, REDIRECT)

    state = _state(started)
    [(state_hash, attempt)] = deps.store.t.attempts.items()
    assert state_hash == proof.digest(state)
    assert attempt.attempt.browser_hash == proof.digest(started.browser_nonce)
    assert attempt.attempt.expires_at == deps.store.now + timedelta(seconds=600)
    assert (attempt.account_id, attempt.requested_by, attempt.redirect_uri) == (ACCOUNT, "user-1", REDIRECT)
    assert attempt.code_verifier is not None
    assert attempt.code_verifier.startswith(f"enc[{ACCOUNT}]:")  # the PKCE verifier is stored encrypted
    assert "code_challenge=" in started.authorize_url
    assert started.expires_in == 600


async def test_the_callback_exchanges_the_code_stores_the_link_and_queues_its_proof() -> None:
    deps = FakeLinkDeps(pkce=True)
    started = await start_authorization(deps, ADMIN, REDIRECT)
    verifier = deps.cipher.decrypt(next(iter(deps.store.t.attempts.values())).code_verifier or "", ACCOUNT)

    command_id = await complete_authorization(deps, _state(started), started.browser_nonce, "the-code")

    assert deps.oauth.exchanged == [("the-code", REDIRECT, verifier)]
    link = deps.store.t.links[ACCOUNT]
    assert (link.grant_type, link.status, link.connect_command) == (
        "authorization_code",
        ConnectionStatus.CONNECTED,
        command_id,
    )
    [queued] = deps.store.t.commands
    assert (queued.event_id, queued.account_id, queued.requested_by, queued.permissions) == (
        command_id,
        ACCOUNT,
        "user-1",
        ["procore.setup"],
    )
    assert deps.store.locked == [ACCOUNT]
    assert deps.woken == 1


@pytest.mark.parametrize(
    ("case", "refusal", "status"),
    [
        ("unknown", CallbackRefusal.UNKNOWN, 400),
        ("replayed", CallbackRefusal.USED, 400),
        ("expired", CallbackRefusal.EXPIRED, 400),
        ("other browser", CallbackRefusal.OTHER_BROWSER, 403),
    ],
)
async def test_a_callback_works_once_in_time_and_in_the_browser_that_started_it(
    case: str, refusal: CallbackRefusal, status: int
) -> None:
    deps = FakeLinkDeps()
    started = await start_authorization(deps, ADMIN, REDIRECT)
    state, nonce = _state(started), started.browser_nonce
    if case == "unknown":
        state = "not-a-state"
    elif case == "replayed":
        await complete_authorization(deps, state, nonce, "the-code")
    elif case == "expired":
        deps.store.now += timedelta(seconds=601)
    else:
        nonce = "another-browser"
    exchanged = len(deps.oauth.exchanged)

    with pytest.raises(Refused) as refused:
        await complete_authorization(deps, state, nonce, "the-code")

    assert (refused.value.status, str(refused.value)) == (status, refusal.value)
    assert len(deps.oauth.exchanged) == exchanged  # the code is never spent


async def test_a_code_procore_refuses_uses_up_the_state_and_stores_nothing() -> None:
    deps = FakeLinkDeps()
    deps.oauth.error = OAuthError(400, "the code expired", "invalid_grant")
    started = await start_authorization(deps, ADMIN, REDIRECT)

    with pytest.raises(Refused) as refused:
        await complete_authorization(deps, _state(started), started.browser_nonce, "old-code")

    assert (refused.value.status, str(refused.value)) == (400, "Procore refused the authorization: the code expired")
    assert next(iter(deps.store.t.attempts.values())).attempt.used_before is not None
    assert deps.store.t.links == {}
    assert deps.store.t.commands == []


async def test_procore_unavailable_during_the_exchange_is_raised_as_is() -> None:
    deps = FakeLinkDeps()
    deps.oauth.error = OAuthError(503, "down")
    started = await start_authorization(deps, ADMIN, REDIRECT)

    with pytest.raises(OAuthError):
        await complete_authorization(deps, _state(started), started.browser_nonce, "the-code")

    assert deps.store.t.links == {}


async def test_a_service_account_connects_with_its_own_credentials() -> None:
    deps = FakeLinkDeps()

    command_id = await connect_service_account(deps, ADMIN, "their-client", "their-secret", 7001)

    link = deps.store.t.links[ACCOUNT]
    assert (link.grant_type, link.client_id, link.client_secret, link.service_account_company_id) == (
        "client_credentials",
        "their-client",
        "their-secret",
        7001,
    )
    assert [c.event_id for c in deps.store.t.commands] == [command_id]
    assert deps.woken == 1


async def test_the_apps_own_credentials_prove_nothing() -> None:
    deps = FakeLinkDeps()

    with pytest.raises(Refused) as refused:
        await connect_service_account(deps, ADMIN, deps.oauth.client_id, "the-app-secret")

    assert (refused.value.status, str(refused.value)) == (400, proof.APP_CREDENTIALS_PROVE_NOTHING)
    assert deps.store.t.links == {}


async def test_credentials_procore_refuses_are_refused_and_a_requester_without_setup_too() -> None:
    deps = FakeLinkDeps()
    deps.oauth.error = OAuthError(401, "invalid client", "invalid_client")

    with pytest.raises(Refused) as refused:
        await connect_service_account(deps, ADMIN, "their-client", "wrong")
    with pytest.raises(Refused) as forbidden:
        await connect_service_account(deps, Requester(ACCOUNT, "user-2", None), "their-client", "their-secret")

    assert (refused.value.status, str(refused.value)) == (400, "Procore refused these credentials: invalid client")
    assert forbidden.value.status == 403
    assert deps.store.t.links == {}
