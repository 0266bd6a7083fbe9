"""Pure rules the gateway needs for the Setup and Data mapping screens: tabs, early 409s, the OAuth state.

The mapping service enforces all of this itself (it owns the data); the gateway mirrors the
tab rules to answer early and to describe the tabs (a unit test holds both copies equal).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from services.gateway.domain import Principal
from services.gateway.views import Tab
from shared.events import MOBICLOCKS_KIND_OF, Module, ProcoreEntity

TABS_OF_MODULE: dict[Module, tuple[ProcoreEntity, ...]] = {
    Module.MANPOWER: (ProcoreEntity.VENDOR, ProcoreEntity.PROJECT),
    Module.TIMECARD: (
        ProcoreEntity.PROJECT,
        ProcoreEntity.EMPLOYEE,
        ProcoreEntity.CLASSIFICATION,
        ProcoreEntity.COST_CODE,
        ProcoreEntity.PAYROLL_TYPE,
    ),
    Module.PRODUCTION_QUANTITY: (ProcoreEntity.PROJECT, ProcoreEntity.COST_CODE),
}
NUMBER_FIELD: dict[ProcoreEntity, str | None] = {
    ProcoreEntity.PROJECT: "project_number",
    ProcoreEntity.EMPLOYEE: "employee_id",
    ProcoreEntity.COST_CODE: "full_code",
    ProcoreEntity.PAYROLL_TYPE: "abbreviated_time_type",
    ProcoreEntity.VENDOR: None,
    ProcoreEntity.CLASSIFICATION: None,
}
MANY_TO_ONE = frozenset(
    {ProcoreEntity.PROJECT, ProcoreEntity.COST_CODE, ProcoreEntity.CLASSIFICATION, ProcoreEntity.PAYROLL_TYPE}
)
NEEDS_MAPPED_PROJECT = frozenset({ProcoreEntity.COST_CODE, ProcoreEntity.CLASSIFICATION})
PROJECT_SCOPED = frozenset({ProcoreEntity.COST_CODE})
TAB_LABEL = {
    ProcoreEntity.VENDOR: ("Vendors", "Company"),
    ProcoreEntity.PROJECT: ("Projects", "Job site"),
    ProcoreEntity.EMPLOYEE: ("Employees", "Employee"),
    ProcoreEntity.CLASSIFICATION: ("Classifications", "Pay class"),
    ProcoreEntity.COST_CODE: ("Cost codes", "Cost code"),
    ProcoreEntity.PAYROLL_TYPE: ("Payroll types", "Pay ID"),
}

TWO_WAY_CONFLICT = (
    "This account uses the two-way integration: mappings come automatically from the Procore ids linked in "
    "MobiClocks, so there is no manual mapping or auto-map. Turn two-way off in Setup to map by hand."
)


class Conflict(Exception):
    """The request is valid but the account's state forbids it (two-way account): HTTP 409."""


class InvalidState(Exception):
    """The OAuth `state` is missing, forged, expired or not for this app."""


def tabs_for(modules: Iterable[Module]) -> list[ProcoreEntity]:
    wanted = {tab for m in modules for tab in TABS_OF_MODULE[m]}
    return [e for e in ProcoreEntity if e in wanted]


def tab(entity: ProcoreEntity) -> Tab:
    label, mobiclocks_label = TAB_LABEL[entity]
    return Tab(
        entity=entity.value,
        label=label,
        mobiclocks_label=mobiclocks_label,
        auto_map=NUMBER_FIELD[entity] is not None,
        number_field=NUMBER_FIELD[entity],
        many_to_one=entity in MANY_TO_ONE,
        needs_project=entity in NEEDS_MAPPED_PROJECT,
    )


def mobiclocks_kind(entity: ProcoreEntity) -> str:
    return MOBICLOCKS_KIND_OF[entity].value


def refuse_two_way(two_way: bool) -> None:
    if two_way:
        raise Conflict(TWO_WAY_CONFLICT)


# --- OAuth state ---------------------------------------------------------------------------

STATE_AUDIENCE = "procore-oauth-state"


def _state_key(secret: str) -> str:
    """A key of its own, derived from JWT_SECRET: a state is never a valid sign-in token, nor the reverse."""
    return hmac.new(secret.encode(), b"procore-oauth-state", hashlib.sha256).hexdigest()


def sign_oauth_state(who: Principal, redirect_uri: str, secret: str, ttl_s: int, now: datetime | None = None) -> str:
    """A signed, expiring `state`: which account and user asked to connect, and the redirect URI used."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "aud": STATE_AUDIENCE,
        "sub": who.user_id,
        "account_id": who.account_id,
        "permissions": sorted(who.permissions),
        "redirect_uri": redirect_uri,
        "nonce": secrets.token_urlsafe(12),
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, _state_key(secret), algorithm="HS256")


def read_oauth_state(state: str, secret: str) -> tuple[Principal, str]:
    """(who asked, redirect URI) from a state this gateway signed; `InvalidState` otherwise."""
    try:
        claims = jwt.decode(
            state,
            _state_key(secret),
            algorithms=["HS256"],
            audience=STATE_AUDIENCE,
            options={"require": ["exp", "sub", "account_id", "redirect_uri", "aud"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise InvalidState("the connection request expired: start again from Setup") from error
    except jwt.InvalidTokenError as error:
        raise InvalidState(f"the connection request is not valid: {error}") from error
    permissions = claims.get("permissions", [])
    if not isinstance(permissions, list):
        raise InvalidState("the connection request is not valid: permissions malformed")
    who = Principal(str(claims["sub"]), str(claims["account_id"]), frozenset(str(p) for p in permissions))
    return who, str(claims["redirect_uri"])
