"""Pure rules of proof and binding: which Procore companies a new connection may bind, and whether an OAuth
callback belongs to the attempt it names. No I/O (README, "Binding").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared import labels

ALREADY_BOUND = "This Procore company is already connected to another MobiClocks account"
APP_CREDENTIALS_PROVE_NOTHING = (
    "the app's own client credentials reach every company that installed the app, so they prove nothing: "
    "enter your company's own service account (a client id and secret created in your Procore company)"
)


class Proof(StrEnum):
    USER_CONSENT = "user_consent"
    """A Procore user consented (authorization code); their own company list says what they can act for."""
    CUSTOMER_CREDENTIALS = "customer_credentials"
    """Client credentials that only the customer holds (a service account created in their company)."""


PROOF_OF_GRANT: dict[str, Proof] = {
    "authorization_code": Proof.USER_CONSENT,
    "client_credentials": Proof.CUSTOMER_CREDENTIALS,
}


def digest(secret: str) -> bytes:
    """What is stored of a state or a browser nonce: a reader of the table cannot present it."""
    return hashlib.sha256(secret.encode()).digest()


# --- binding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReachedCompany:
    procore_company_id: int
    name: str
    is_active: bool


@dataclass(frozen=True)
class BindingPlan:
    bind: list[ReachedCompany]
    """Proven and bound to nobody: bound to the account now."""
    kept: list[ReachedCompany]
    """Already the account's own."""
    taken: list[ReachedCompany]
    """Bound to another account: never offered, never named to this one."""


def plan_bindings(account_id: str, proven: Sequence[ReachedCompany], holders: Mapping[int, str]) -> BindingPlan:
    """Every company the proof covers is bound to the account unless another account holds it."""
    plan = BindingPlan([], [], [])
    for company in proven:
        holder = holders.get(company.procore_company_id)
        if holder is None:
            plan.bind.append(company)
        elif holder == account_id:
            plan.kept.append(company)
        else:
            plan.taken.append(company)
    return plan


def connected_message(grant: str, mine: Sequence[str], taken: int, chosen: str | None) -> str:
    """The outcome of a new connection, for the person who connected."""
    method = labels.CONNECTION_METHODS.get(grant, "a new connection")
    text = f"Connected to Procore with {method}; companies: {', '.join(mine) or 'none'}"
    if taken:
        companies = "1 Procore company" if taken == 1 else f"{taken} Procore companies"
        text += f"; {companies} it reaches {'is' if taken == 1 else 'are'} already connected to another MobiClocks "
        text += "account (not offered)"
    if chosen:
        text += f"; company {chosen} chosen (the only one)"
    return text


def not_bound_message(company_id: int, holder: str | None) -> str:
    """Why a Setup choice is refused."""
    if holder is not None:
        return ALREADY_BOUND
    return (
        f"Procore company {company_id} is not connected to this account: connect to Procore with a user of that "
        "company, or with its own service account, first"
    )


# --- the OAuth attempt a callback names -----------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    browser_hash: bytes
    expires_at: datetime
    used_before: datetime | None
    """When the attempt was used before this callback (None: this is its first use)."""


class CallbackRefusal(StrEnum):
    UNKNOWN = "this Procore connection request is unknown: start again from Setup"
    USED = "this Procore connection request was already used: start again from Setup"
    EXPIRED = "this Procore connection request expired: start again from Setup"
    OTHER_BROWSER = (
        "this Procore connection was started in another browser (or its cookie is gone): start again from Setup "
        "in this browser"
    )


def callback_refusal(attempt: Attempt | None, browser_nonce: str, now: datetime) -> CallbackRefusal | None:
    """Why a callback may not complete the attempt its state names, or None. Single use, short-lived, and only in
    the browser that started it (the login-CSRF defence: an attacker's state is useless in a victim's browser)."""
    if attempt is None:
        return CallbackRefusal.UNKNOWN
    if attempt.used_before is not None:
        return CallbackRefusal.USED
    if attempt.expires_at <= now:
        return CallbackRefusal.EXPIRED
    if not browser_nonce or not hmac.compare_digest(digest(browser_nonce), attempt.browser_hash):
        return CallbackRefusal.OTHER_BROWSER
    return None
