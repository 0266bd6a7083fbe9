"""The compose demo's sign-in stand-in (sandbox.issuer): the production gateway's verifier takes its tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.issuer import AUDIENCE, ISSUER
from services.gateway.auth import TokenVerifier
from services.gateway.config import GatewaySettings
from services.gateway.tokens import NotAuthenticated
from tests.support.issuer import running_issuer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def issuer_port() -> Iterator[int]:
    with running_issuer() as port:
        yield port


def verifier(port: int) -> TokenVerifier:
    settings = GatewaySettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        database_url="postgresql://gateway@127.0.0.1/x",
        jwks_url=f"http://127.0.0.1:{port}/.well-known/jwks.json",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    return TokenVerifier.from_settings(settings)


def mint(port: int, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.issuer", "mint", "--port", str(port), *args],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


async def test_a_minted_token_signs_in_to_the_production_gateway(issuer_port: int) -> None:
    token = mint(issuer_port, "--account", "demo", "--user", "pat", "--permission", "procore.publish")
    who = await verifier(issuer_port).principal(token)
    assert (who.account_id, who.user_id, set(who.permissions)) == ("demo", "pat", {"procore.publish"})


async def test_a_token_of_another_issuer_instance_is_refused(issuer_port: int) -> None:
    from sandbox.issuer import Issuer, MintRequest

    foreign = Issuer().mint(MintRequest(account_id="demo"))
    with pytest.raises(NotAuthenticated):
        await verifier(issuer_port).principal(foreign)
