"""Pure rules of proof and binding (services/mapping/proof.py) and the PKCE pair (shared/procore/oauth.py)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

from sandbox.procore.state import pkce_challenge
from services.mapping.proof import (
    ALREADY_BOUND,
    Attempt,
    CallbackRefusal,
    ReachedCompany,
    callback_refusal,
    connected_message,
    digest,
    not_bound_message,
    plan_bindings,
)
from shared.procore.oauth import Pkce, s256

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
A, B, C = (ReachedCompany(i, f"Co {i}", True) for i in (1, 2, 3))


def test_a_proof_binds_what_nobody_holds_keeps_its_own_and_never_takes_anothers() -> None:
    plan = plan_bindings("acc", [A, B, C], {2: "acc", 3: "someone-else"})
    assert (plan.bind, plan.kept, plan.taken) == ([A], [B], [C])


def test_the_outcome_names_only_the_accounts_companies() -> None:
    text = connected_message("authorization_code", ["Co 1"], taken=1, chosen="Co 1")
    assert "companies: Co 1" in text
    assert "Co 3" not in text
    assert "1 Procore company it reaches is already connected to another MobiClocks account" in text
    assert "2 Procore companies it reaches are" in connected_message("client_credentials", [], taken=2, chosen=None)


def test_a_setup_choice_of_another_accounts_company_is_refused_clearly() -> None:
    assert not_bound_message(5, "other") == ALREADY_BOUND
    assert "not connected to this account" in not_bound_message(5, None)


def attempt(nonce: str = "n", expires_in_s: int = 60, used: bool = False) -> Attempt:
    return Attempt(digest(nonce), NOW + timedelta(seconds=expires_in_s), NOW if used else None)


def test_a_callback_completes_only_its_browsers_unused_unexpired_attempt() -> None:
    assert callback_refusal(attempt(), "n", NOW) is None
    assert callback_refusal(None, "n", NOW) is CallbackRefusal.UNKNOWN
    assert callback_refusal(attempt(used=True), "n", NOW) is CallbackRefusal.USED
    assert callback_refusal(attempt(expires_in_s=0), "n", NOW) is CallbackRefusal.EXPIRED
    assert callback_refusal(attempt(), "other", NOW) is CallbackRefusal.OTHER_BROWSER
    assert callback_refusal(attempt(), "", NOW) is CallbackRefusal.OTHER_BROWSER


def test_pkce_s256_as_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce_challenge(verifier, "S256") == s256(verifier)
    assert pkce_challenge(verifier, "plain") == verifier
    pair = Pkce.new()
    assert 43 <= len(pair.verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(pair.verifier.encode()).digest()).rstrip(b"=").decode()
    assert pair.challenge == expected
    assert Pkce.new().verifier != pair.verifier
