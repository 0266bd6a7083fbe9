"""Who is calling: token rules (MobiClocks core's and development tokens) and live-updates tickets.

Pure: PyJWT and the claims only; picking the key is `auth.py`'s, fetching it `adapters/signing_keys.py`'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pydantic import TypeAdapter, ValidationError

from shared.events import Id, Permission

# --- auth ------------------------------------------------------------------------------

CORE_ALGORITHMS: tuple[str, ...] = ("RS256", "EdDSA")
"""Production: MobiClocks core signs with a private key; the gateway holds only the public keys (JWKS)."""
DEV_ALGORITHM = "HS256"
"""Development only: a shared secret (JWT_SECRET) signs the tokens of dev login and tests."""
DEV_ISSUER = "procore-gateway-dev-login"
DEV_AUDIENCE = "procore-gateway-development"
"""The audience of every development token. Production checks its own audience (JWT_AUDIENCE, which may never be
this one) and never takes HS256, so a development token is refused there twice over."""


@dataclass(frozen=True)
class Principal:
    """The signed-in user: every query and command is scoped to `account_id`."""

    user_id: str
    account_id: str
    permissions: frozenset[str] = frozenset()

    def has(self, permission: Permission) -> bool:
        return permission.value in self.permissions


@dataclass(frozen=True)
class TokenRules:
    """What a token must say to be taken: signed with one of `algorithms`, by `issuer`, for `audience`."""

    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    leeway_s: int = 30


DEV_RULES = TokenRules(DEV_ISSUER, DEV_AUDIENCE, (DEV_ALGORITHM,))


class NotAuthenticated(Exception):
    """No token, or one that is not valid (bad signature, expired, wrong issuer or audience, missing claims): 401."""


def issue_dev_token(principal: Principal, secret: str, ttl_s: int, now: datetime | None = None) -> str:
    """A development token (HS256, the development issuer and audience): dev login and tests, never production."""
    issued = now or datetime.now(UTC)
    claims = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": principal.user_id,
        "account_id": principal.account_id,
        "permissions": sorted(principal.permissions),
        "iat": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=DEV_ALGORITHM)


@dataclass(frozen=True)
class TokenHeader:
    algorithm: str
    key_id: str | None


def token_header(token: str) -> TokenHeader:
    """The unverified header: which algorithm and key the token claims, to pick the verification (never trusted
    beyond that: the key and the algorithm allow-list decide)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as error:
        raise NotAuthenticated(f"invalid token: {error}") from error
    algorithm, key_id = header.get("alg"), header.get("kid")
    if not isinstance(algorithm, str) or (key_id is not None and not isinstance(key_id, str)):
        raise NotAuthenticated("invalid token: malformed header")
    return TokenHeader(algorithm, key_id)


_ID = TypeAdapter(Id)
_PERMISSIONS = TypeAdapter(list[str])
_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub", "account_id", "permissions"]


def read_token(token: str, key: Any, rules: TokenRules) -> Principal:
    """The principal of a token that `key` verifies and that meets `rules`; `NotAuthenticated` naming the problem.

    Fail closed: a token without a permissions list is refused, not read as "no permissions"."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(rules.algorithms),
            audience=rules.audience,
            issuer=rules.issuer,
            leeway=rules.leeway_s,
            options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
        )
    except jwt.ExpiredSignatureError as error:
        raise NotAuthenticated("token expired") from error
    except jwt.InvalidAudienceError as error:
        raise NotAuthenticated(f"token not meant for this service (aud): {error}") from error
    except jwt.InvalidIssuerError as error:
        raise NotAuthenticated(f"token from an issuer this service does not trust (iss): {error}") from error
    except jwt.InvalidAlgorithmError as error:
        raise NotAuthenticated(f"token algorithm not accepted here: {error}") from error
    except jwt.InvalidTokenError as error:
        raise NotAuthenticated(f"invalid token: {error}") from error
    try:
        user_id = _ID.validate_python(claims["sub"])
        account_id = _ID.validate_python(claims["account_id"])
        permissions = _PERMISSIONS.validate_python(claims["permissions"], strict=True)
    except ValidationError as error:
        raise NotAuthenticated("invalid token: sub, account_id or permissions malformed") from error
    return Principal(user_id=user_id, account_id=account_id, permissions=frozenset(permissions))


# --- live updates: tickets for EventSource (it cannot send an Authorization header) ----------

LIVE_AUDIENCE = "procore-gateway-live"
LIVE_TICKET_TTL_S = 120
"""Long enough to open the stream (and for EventSource's quick reconnects), short enough that a ticket seen in a
URL is soon worthless. A client whose stream ends asks for a new ticket."""


def live_ticket_key(shared_secret: str, fallback: bytes) -> bytes:
    """The key tickets are signed with: derived from a secret every gateway instance holds (so any instance takes
    another's tickets), else `fallback` (a key of this gateway only: its process, or its workers)."""
    if not shared_secret:
        return fallback
    return hashlib.sha256(b"procore-gateway-live-ticket:" + shared_secret.encode()).digest()


def issue_live_ticket(principal: Principal, key: bytes, now: datetime | None = None) -> str:
    """A short-lived ticket naming the user and account, for `GET /api/live?ticket=`: never the bearer token."""
    issued = now or datetime.now(UTC)
    claims = {
        "aud": LIVE_AUDIENCE,
        "sub": principal.user_id,
        "account_id": principal.account_id,
        "exp": int((issued + timedelta(seconds=LIVE_TICKET_TTL_S)).timestamp()),
    }
    return jwt.encode(claims, key, algorithm="HS256")


def read_live_ticket(ticket: str, key: bytes) -> Principal:
    try:
        claims: dict[str, Any] = jwt.decode(
            ticket, key, algorithms=["HS256"], audience=LIVE_AUDIENCE, options={"require": ["exp", "aud", "sub"]}
        )
        return Principal(_ID.validate_python(claims["sub"]), _ID.validate_python(claims["account_id"]))
    except jwt.ExpiredSignatureError as error:
        raise NotAuthenticated("the live-updates ticket expired: ask for a new one") from error
    except (jwt.InvalidTokenError, KeyError, ValidationError) as error:
        raise NotAuthenticated("invalid live-updates ticket: ask POST /api/live/ticket for one") from error
