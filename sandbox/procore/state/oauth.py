"""OAuth as Procore runs it: app clients, users, authorization codes (with PKCE), access and refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable
from typing import Any

from sandbox.procore.state.base import StateBase
from sandbox.procore.state.errors import ProcoreError
from sandbox.procore.state.identity import Actor, AuthCode, Client, Token, User

DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
PKCE_METHODS = ("S256", "plain")
_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def pkce_challenge(verifier: str, method: str) -> str:
    """RFC 7636 section 4.2: S256 = BASE64URL(SHA256(ASCII(verifier))) without padding; plain = the verifier."""
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuthGrants(StateBase):
    """Clients, users and the tokens they are granted; who a token acts as."""

    def register_client(self, client_id: str, secret: str, company_ids: Iterable[int], name: str = "") -> Client:
        existing = self.clients.get(client_id)
        if existing is not None:
            existing.secret = secret
            existing.company_ids |= set(company_ids)
            return existing
        client = Client(client_id, secret, set(company_ids), self.next_id(), name or client_id)
        self.clients[client_id] = client
        return client

    def authenticate_client(self, client_id: Any, secret: Any) -> Client:
        client = self.clients.get(client_id) if isinstance(client_id, str) else None
        if client is None or not isinstance(secret, str) or not secrets.compare_digest(client.secret, secret):
            raise ProcoreError(401, "Client authentication failed", reason="invalid_client")
        return client

    def issue_token(self, client: Client, grant_type: str, *, with_refresh: bool, user_id: int | None = None) -> Token:
        now = self.wall()
        token = Token(
            access_token=secrets.token_urlsafe(32),
            client_id=client.client_id,
            created_at=now,
            expires_at=now + self.settings.token_lifetime_s,
            grant_type=grant_type,
            refresh_token=secrets.token_urlsafe(32) if with_refresh else None,
            user_id=user_id,
        )
        self.tokens[token.access_token] = token
        if token.refresh_token:
            self.refresh_tokens[token.refresh_token] = token
        return token

    def register_user(self, login: str, name: str, company_ids: Iterable[int]) -> User:
        """A Procore user and their company memberships (an existing login gains the companies)."""
        for company_id in company_ids:
            self.company(company_id)
        existing = self.user_by_login(login)
        if existing is not None:
            existing.company_ids |= set(company_ids)
            existing.name = name or existing.name
            return existing
        user = User(self.next_id(), login, name or login, set(company_ids))
        self.users[user.id] = user
        return user

    def user_by_login(self, login: str) -> User | None:
        wanted = login.strip().casefold()
        return next((u for u in self.users.values() if u.login.casefold() == wanted), None)

    def issue_auth_code(
        self,
        client_id: str,
        redirect_uri: str,
        user_id: int,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> str:
        """A one-time code for what `user_id` consented to; bound to the PKCE challenge when one was sent."""
        if client_id not in self.clients:
            raise ProcoreError(401, "Client authentication failed", reason="invalid_client")
        if user_id not in self.users:
            raise ProcoreError(400, "Unknown user", reason="invalid_request")
        method = code_challenge_method or "plain"  # RFC 7636 4.3: plain when the method is left out
        if code_challenge is not None and (method not in PKCE_METHODS or not _PKCE_VERIFIER.match(code_challenge)):
            raise ProcoreError(400, "code_challenge or code_challenge_method is invalid", reason="invalid_request")
        code = secrets.token_urlsafe(24)
        self.auth_codes[code] = AuthCode(
            code, client_id, redirect_uri, self.wall() + 600, user_id, code_challenge, method
        )
        return code

    def redeem_auth_code(self, client: Client, code: Any, redirect_uri: Any, code_verifier: Any = None) -> Token:
        grant = self.auth_codes.pop(code, None) if isinstance(code, str) else None
        if (
            grant is None
            or grant.client_id != client.client_id
            or grant.expires_at < self.wall()
            or (redirect_uri is not None and redirect_uri != grant.redirect_uri)
        ):
            raise ProcoreError(400, "The provided authorization grant is invalid or expired", reason="invalid_grant")
        if grant.code_challenge is not None and not (
            isinstance(code_verifier, str)
            and _PKCE_VERIFIER.match(code_verifier)
            and secrets.compare_digest(pkce_challenge(code_verifier, grant.code_challenge_method), grant.code_challenge)
        ):
            # RFC 7636 4.6: the code is spent either way (popped above).
            raise ProcoreError(400, "The code_verifier does not match the code_challenge", reason="invalid_grant")
        return self.issue_token(client, "authorization_code", with_refresh=True, user_id=grant.user_id)

    def refresh(self, client: Client, refresh_token: Any) -> Token:
        """Refresh tokens are single-use: the old one is burnt and a new pair is issued (for the same user)."""
        old = self.refresh_tokens.pop(refresh_token, None) if isinstance(refresh_token, str) else None
        if old is None or old.client_id != client.client_id or old.revoked:
            raise ProcoreError(400, "The refresh token is invalid, used or revoked", reason="invalid_grant")
        return self.issue_token(client, "refresh_token", with_refresh=True, user_id=old.user_id)

    def revoke(self, token_value: str) -> None:
        token = self.tokens.get(token_value) or self.refresh_tokens.pop(token_value, None)
        if token is not None:
            token.revoked = True
            if token.refresh_token:
                self.refresh_tokens.pop(token.refresh_token, None)

    def revoke_all(self, client_id: str | None = None, *, refresh_tokens: bool = False) -> int:
        """Revoke every live access token (of one client): Procore withdrawing an app's access at once.

        Refresh tokens stay usable unless `refresh_tokens`, so a connection can recover by refreshing.
        """
        doomed = [
            value
            for value, token in self.tokens.items()
            if not token.revoked and (client_id is None or token.client_id == client_id)
        ]
        for value in doomed:
            token = self.tokens.pop(value)  # unknown from now on: 401 like a revoked one
            if refresh_tokens:
                token.revoked = True
                if token.refresh_token:
                    self.refresh_tokens.pop(token.refresh_token, None)
        return len(doomed)

    def check_token(self, authorization: str | None) -> Token:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ProcoreError(401, "Access token is missing", reason="unauthorized")
        token = self.tokens.get(authorization[7:].strip())
        if token is None or token.revoked:
            raise ProcoreError(401, "Access token is invalid or revoked", reason="unauthorized")
        if token.expires_at <= self.wall():
            raise ProcoreError(401, "Access token expired", reason="unauthorized")
        return token

    def actor_for(self, client_id: str) -> Actor:
        client = self.clients[client_id]
        return Actor(client.user_id, client.name, f"{client.client_id}@apps.procore.example", client.client_id)

    def actor_for_token(self, token: Token) -> Actor:
        """Writes made with a user's token are the user's (through the app); others the app's service account."""
        if token.user_id is not None and token.user_id in self.users:
            user = self.users[token.user_id]
            return Actor(user.id, user.name, user.login, token.client_id)
        return self.actor_for(token.client_id)
