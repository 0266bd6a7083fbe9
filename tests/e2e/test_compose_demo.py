"""docker compose's `demo` profile, minus Docker: the seeding it runs (`python -m sandbox.demo`) signs in with the
sign-in stand-in's token (as the production gateway requires), connects and configures the demo account through
the gateway's API and sends MobiClocks core's events; the dashboard then shows the demo's entries."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.demo import ACCOUNT, seed_compose
from sandbox.issuer import AUDIENCE, ISSUER, MintRequest, mint_from_running
from tests.support.issuer import running_issuer
from tests.support.kafka import eventually
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e


@pytest.fixture
def issuer_port() -> Iterator[int]:
    with running_issuer() as port:
        yield port


@pytest.fixture
def system(kafka_bootstrap: str, postgres_dsn: str, unique: str, issuer_port: int) -> Iterator[System]:
    trusted = {
        "JWKS_URL": f"http://127.0.0.1:{issuer_port}/.well-known/jwks.json",
        "JWT_ISSUER": ISSUER,
        "JWT_AUDIENCE": AUDIENCE,
    }
    with running_system(kafka_bootstrap, postgres_dsn, unique, extra_env=trusted) as running:
        yield running


async def test_the_compose_demo_seeds_an_account_that_signs_in_with_a_minted_token(
    system: System, kafka_bootstrap: str, issuer_port: int
) -> None:
    base, sandbox_url = system.ready()
    token = mint_from_running(issuer_port, MintRequest(account_id=ACCOUNT, user_id="demo-admin"))
    said = await seed_compose(base, sandbox_url, token, kafka_bootstrap, system.topics)
    assert said.startswith(f"demo: account '{ACCOUNT}'"), said

    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=auth) as gateway:
        me = (await gateway.get("/api/me")).json()
        assert me["account_id"] == ACCOUNT
        assert me["user_id"] == "demo-admin"

        async def dashboard() -> dict[str, object]:
            response = await gateway.get("/api/modules/manpower/dashboard")
            return dict(response.json()) if response.status_code == 200 else {}

        def named_cells(d: dict[str, object]) -> list[str]:
            rows = d.get("rows") or []
            assert isinstance(rows, list)
            return [r["job_site"]["name"] for r in rows if any(r["days"])]

        shown = await eventually(
            dashboard, lambda d: "Tower A" in named_cells(d), timeout_s=60, what="the demo's entries on the dashboard"
        )
        assert {"Tower A", "Harbor Bridge"} <= set(named_cells(shown)), shown
        setup = (await gateway.get("/api/setup")).json()
        assert setup["procore_company_id"], setup
        assert "manpower" in setup["enabled_modules"], setup
