"""A stand-in for MobiClocks core's sign-in, for trying docker compose: it signs tokens the production gateway takes.

The gateway in compose runs in production mode: it accepts only RS256/EdDSA tokens whose key is in the JSON Web
Key Set at JWKS_URL, which must be https or plain http on loopback. Compose's `demo` profile runs this issuer in
the gateway's own network namespace (`network_mode: service:gateway`), so the gateway reaches it at
`http://127.0.0.1:8095/.well-known/jwks.json` and nothing else can. Its key lives in memory: a restart signs
with a new key, and earlier tokens stop working.

    python -m sandbox.issuer serve [--port 8095]
    python -m sandbox.issuer mint --account demo [--user demo-admin] [--permission procore.publish ...]
                                  (asks the running issuer on loopback; prints the token)
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
import urllib.request
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from pydantic import BaseModel, Field

from shared.events import Permission

DEFAULT_PORT = 8095
ISSUER = "https://mobiclocks.demo"
AUDIENCE = "procore-publishing"
TTL_S = 8 * 3600


class MintRequest(BaseModel):
    account_id: str = Field(min_length=1, max_length=64)
    user_id: str = Field(default="demo-admin", min_length=1, max_length=64)
    permissions: list[Permission] = Field(default_factory=lambda: list(Permission))


class Issuer:
    """One RSA key (2048 bits, a random kid): its public half as a JWKS, tokens signed with the private one."""

    def __init__(self, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.issuer, self.audience = issuer, audience
        self.key_id = secrets.token_hex(8)
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        public: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._private.public_key()))
        return {"keys": [{**public, "kid": self.key_id, "use": "sig", "alg": "RS256"}]}

    def mint(self, request: MintRequest, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": request.user_id,
            "account_id": request.account_id,
            "permissions": sorted(p.value for p in request.permissions),
            "iat": issued,
            "exp": issued + TTL_S,
        }
        return jwt.encode(claims, self._private, algorithm="RS256", headers={"kid": self.key_id})


def create_app(issuer: Issuer | None = None) -> FastAPI:
    issuer = issuer or Issuer()
    app = FastAPI(title="MobiClocks core sign-in (stand-in)", docs_url=None, redoc_url=None)

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict[str, Any]:
        """The public key the gateway verifies tokens with."""
        return issuer.jwks()

    @app.post("/mint")
    async def mint(request: MintRequest) -> dict[str, str]:
        """A token for an account and user (every permission unless listed)."""
        return {"access_token": issuer.mint(request), "token_type": "Bearer"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def mint_from_running(port: int, request: MintRequest) -> str:
    http_request = urllib.request.Request(
        f"http://127.0.0.1:{port}/mint",
        data=request.model_dump_json().encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(http_request, timeout=10) as response:
        return str(json.load(response)["access_token"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.issuer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the key set and mint tokens, on loopback")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    mint = commands.add_parser("mint", help="print a token from the running issuer")
    mint.add_argument("--port", type=int, default=DEFAULT_PORT)
    mint.add_argument("--account", required=True)
    mint.add_argument("--user", default="demo-admin")
    mint.add_argument("--permission", action="append", choices=[p.value for p in Permission])
    args = parser.parse_args(argv)
    if args.command == "serve":
        uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
        return
    permissions = [Permission(p) for p in args.permission] if args.permission else list(Permission)
    token = mint_from_running(
        args.port, MintRequest(account_id=args.account, user_id=args.user, permissions=permissions)
    )
    sys.stdout.write(token + "\n")


if __name__ == "__main__":
    main()
