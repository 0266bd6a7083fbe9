"""Who talks to the sandbox: OAuth apps (clients), Procore users, their tokens and codes, and who made a write."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Client:
    client_id: str
    secret: str
    company_ids: set[int]
    user_id: int  # the app's service-account user; appears as created_by / webhook user_id
    name: str


@dataclass
class User:
    """A Procore user (a person who signs in): the companies they are a member of are the ones they can act for."""

    id: int
    login: str
    name: str
    company_ids: set[int]


@dataclass
class Token:
    access_token: str
    client_id: str
    created_at: float
    expires_at: float
    grant_type: str
    refresh_token: str | None = None
    revoked: bool = False
    user_id: int | None = None
    """The consenting user (authorization code and its refreshes); None: the client's own service account."""


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    expires_at: float
    user_id: int
    code_challenge: str | None = None
    """RFC 7636: set when the authorize request carried one; the token request must then prove the verifier."""
    code_challenge_method: str = "plain"


@dataclass(frozen=True)
class Actor:
    """Who performed a write: an OAuth client (our publisher) or a human Procore user (control API)."""

    user_id: int
    name: str
    login: str
    client_id: str | None = None
