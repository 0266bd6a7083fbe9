"""Pure rules the gateway needs for the Setup and Data mapping screens: tabs, early 409s, the OAuth state.

The mapping service enforces all of this itself (it owns the data); the gateway uses the same rules
(shared.mapping_rules) to answer early and to describe the tabs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from services.gateway.domain import Principal
from services.gateway.views import Tab
from shared.events import MOBICLOCKS_KIND_OF, ProcoreEntity
from shared.mapping_rules import (  # noqa: F401 - the gateway describes tabs with the product's own rules
    MANY_TO_ONE,
    MOBICLOCKS_LABEL,
    NEEDS_MAPPED_PROJECT,
    NUMBER_FIELD,
    PROJECT_SCOPED,
    TAB_LABEL,
    TABS_OF_MODULE,
    tabs_for,
)


def _sentence_case(label: str) -> str:
    return label[:1].upper() + label[1:]


# The gateway's own wording of each tab: (Procore tab label, MobiClocks column label).
TAB_LABELS: dict[ProcoreEntity, tuple[str, str]] = {
    entity: (TAB_LABEL[entity], _sentence_case(MOBICLOCKS_LABEL[MOBICLOCKS_KIND_OF[entity]]))
    for entity in ProcoreEntity
}

TWO_WAY_CONFLICT = (
    "This account uses the two-way integration: mappings come automatically from the Procore ids linked in "
    "MobiClocks, so there is no manual mapping or auto-map. Turn two-way off in Setup to map by hand."
)


class Conflict(Exception):
    """The request is valid but the account's state forbids it (two-way account): HTTP 409."""


class InvalidState(Exception):
    """The OAuth `state` is missing, forged, expired or not for this app."""


def tab(entity: ProcoreEntity) -> Tab:
    label, mobiclocks_label = TAB_LABELS[entity]
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
