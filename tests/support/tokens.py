"""MobiClocks core as the gateway sees it in tests: signing keys generated here (RSA 2048, Ed25519), tokens signed
with them, and a key server publishing their public halves as a JSON Web Key Set over real HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt import PyJWK
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ISSUER = "https://core.mobiclocks.test"
AUDIENCE = "procore-publishing"
ALL_PERMISSIONS = ["procore.mapping", "procore.publish", "procore.setup"]


class CoreKey:
    """A signing key of MobiClocks core: its private half signs, its public JWK is what the gateway gets."""

    def __init__(self, kind: str, kid: str) -> None:
        self.kid = kid
        if kind == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.algorithm = "RS256"
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
            self.algorithm = "EdDSA"
            public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.private.public_key()))
        self.jwk = {**public, "kid": kid, "use": "sig", "alg": self.algorithm}

    @property
    def public(self) -> PyJWK:
        return PyJWK(self.jwk)

    def sign(self, **overrides: Any) -> str:
        """A token as core issues it; an override of None leaves that claim out."""
        now = datetime.now(UTC)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "u1",
            "account_id": "acc-1",
            "permissions": ["procore.publish"],
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=5)).timestamp()),
            **overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm=self.algorithm, headers={"kid": self.kid})

    def bearer(self, account: str, permissions: list[str] | None = None, user: str = "u1", **overrides: Any) -> dict:
        token = self.sign(
            sub=user,
            account_id=account,
            permissions=ALL_PERMISSIONS if permissions is None else permissions,
            **overrides,
        )
        return {"Authorization": f"Bearer {token}"}


class KeyServer:
    """Core's JWKS endpoint: serves whatever keys it holds now (rotate by changing `keys`) and counts the fetches."""

    PATH = "/.well-known/jwks.json"

    def __init__(self, *keys: CoreKey) -> None:
        self.keys = list(keys)
        self.fetches = 0

    async def _jwks(self, request: Request) -> JSONResponse:
        self.fetches += 1
        return JSONResponse({"keys": [k.jwk for k in self.keys]})

    def app(self) -> Starlette:
        return Starlette(routes=[Route(self.PATH, self._jwks)])
