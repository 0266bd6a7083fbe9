"""Secrets of the mapping service: the internal API on its own port only, keys that rotate while the service runs,
ciphertexts bound to their account.

Real PostgreSQL, real broker, the sandbox over HTTP; `rotate-keys` runs as the operator runs it (a subprocess).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from services.mapping.adapters.internal_api import OAUTH_COMPLETE, OAUTH_START, PATH, SERVICE_ACCOUNT
from services.mapping.adapters.procore_links import TokenCipher
from services.mapping.bootstrap import build_app as build_mapping
from services.mapping.config import MappingSettings
from shared.broker import ensure_topics
from tests.sandbox_fixtures import run_sandbox
from tests.support.mapping import (
    INTERNAL_TOKEN,
    connect_service_account,
    connect_user,
    fetch,
    internal,
    internal_url,
    mapping_settings,
    sandbox_user,
    serve_asgi,
    serve_mapping,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
INTERNAL_PATHS = (PATH, OAUTH_START, OAUTH_COMPLETE, SERVICE_ACCOUNT)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


@pytest.fixture
async def cfg(
    sandbox: str, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> StackConfig:
    config = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    await ensure_topics(kafka_bootstrap, config.topics.all())
    return config


async def new_company(sandbox: str, name: str) -> int:
    async with httpx.AsyncClient(base_url=sandbox) as control:
        created = await control.post("/_sandbox/companies", json={"name": name})
    company_id: int = created.json()["company_id"]
    return company_id


async def token(url: str, account: str, company_id: int, force: bool = False) -> httpx.Response:
    body = {"account_id": account, "procore_company_id": company_id, "force_refresh": force}
    return await internal(url, "/procore-token", body)


async def test_the_internal_api_answers_on_its_own_port_and_the_public_port_says_404(cfg: StackConfig) -> None:
    settings = mapping_settings(cfg)
    bearer = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    async with serve_asgi(build_mapping(settings)) as public, httpx.AsyncClient(timeout=30) as http:
        inside = internal_url(settings)
        assert settings.internal_http_port != int(public.rsplit(":", 1)[1])
        for path in INTERNAL_PATHS:
            assert (await http.post(f"{public}{path}", json={}, headers=bearer)).status_code == 404, path
            assert (await http.post(f"{inside}{path}", json={})).status_code == 401, path
            assert (await http.post(f"{inside}{path}", json={}, headers=bearer)).status_code == 422, path
        assert (await http.get(f"{public}/health/live")).status_code == 200
        assert (await http.get(f"{inside}/health/live")).status_code == 404  # nothing else is served there
    with pytest.raises(httpx.ConnectError):  # stopped with the service
        async with httpx.AsyncClient() as http:
            await http.post(f"{inside}{PATH}", json={}, headers=bearer)


async def test_without_internal_token_there_is_no_internal_api(cfg: StackConfig) -> None:
    settings = mapping_settings(cfg, internal_api_token="")
    async with serve_asgi(build_mapping(settings)), httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"{internal_url(settings)}{PATH}", json={})


def stored_secrets(rows: list[Any], columns: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(r["account_id"], r[c]) for r in rows for c in columns if r[c] is not None]


async def all_secrets(cfg: StackConfig) -> list[tuple[str, str]]:
    schema = cfg.schemas["mapping"]
    connections = await fetch(
        cfg.dsn, f'SELECT account_id, access_token, refresh_token, client_secret FROM "{schema}".connections'
    )
    attempts = await fetch(cfg.dsn, f'SELECT account_id, code_verifier FROM "{schema}".oauth_attempts')
    return stored_secrets(connections, ("access_token", "refresh_token", "client_secret")) + stored_secrets(
        attempts, ("code_verifier",)
    )


async def rotate_keys(settings: MappingSettings, keys: str) -> tuple[int, str, str]:
    """`python -m services.mapping rotate-keys`, as an operator runs it beside the running service."""
    env = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        DATABASE_URL=settings.database_url.get_secret_value(),
        DB_SCHEMA=settings.db_schema,
        PROCORE_BASE_URL=settings.procore_base_url,
        PROCORE_LOGIN_URL=settings.login_url,
        PROCORE_CLIENT_ID=settings.procore_client_id,
        PROCORE_CLIENT_SECRET=settings.procore_client_secret.get_secret_value(),
        TOKEN_ENCRYPTION_KEYS=keys,
    )
    command = [sys.executable, "-m", "services.mapping", "rotate-keys", "--batch-size", "1"]
    pipe = asyncio.subprocess.PIPE
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=pipe, stderr=pipe)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_keys_rotate_while_the_service_refreshes_tokens(cfg: StackConfig, sandbox: str, unique: str) -> None:
    user_company, sa_company = await new_company(sandbox, f"User co {unique}"), await new_company(sandbox, "SA co")
    login = f"pat-{unique}@rotate.example"
    await sandbox_user(sandbox, login, [user_company])
    by_user, by_service_account = f"acc-user-{unique}", f"acc-sa-{unique}"

    # Everything stored under the old key: a user's tokens, a customer's client secret, a PKCE verifier in flight.
    async with serve_mapping(mapping_settings(cfg, token_encryption_keys=OLD)) as url:
        assert (await connect_user(cfg, url, by_user, login))["status"] == "done"
        assert (await connect_service_account(cfg, url, by_service_account, sa_company))["status"] == "done"
        start = {"account_id": by_user, "user_id": "u", "permissions": ["procore.setup"], "redirect_uri": "http://g/cb"}
        started = await internal(url, "/oauth/start", start)
        assert started.status_code == 200
    before = await all_secrets(cfg)
    assert {c for _, c in before}
    assert all(TokenCipher([OLD]).decrypt(v, a) for a, v in before)
    assert len(before) == 6  # access + refresh, access + client secret, two PKCE verifiers (one used, one not)

    # The new key first, the old one still accepted; rotate while refreshes rotate the refresh token meanwhile.
    both = mapping_settings(cfg, token_encryption_keys=f"{NEW},{OLD}")
    async with serve_mapping(both) as url:
        rotation = asyncio.create_task(rotate_keys(both, f"{NEW},{OLD}"))
        refreshed: list[int] = []
        while not rotation.done() or len(refreshed) < 3:  # every refresh rotates the refresh token
            refreshed.append((await token(url, by_user, user_company, force=True)).status_code)
        code, out, err = await rotation
        assert code == 0, err
        assert set(refreshed) == {200}, f"a refresh token was lost to the rotation: {refreshed}"
        assert "rotate-keys" in err, "a progress bar"
        assert "100%" in err, "a progress bar"
        assert "rows" in out
        assert "re-encrypted under the first key" in out

        after = await all_secrets(cfg)
        assert len(after) == 6
        new_only = TokenCipher([NEW])
        assert all(new_only.decrypt(value, account) for account, value in after)
        served = await token(url, by_user, user_company, force=True)
        assert served.status_code == 200

    # Idempotent: nothing left to do.
    code, out, err = await rotate_keys(both, f"{NEW},{OLD}")
    assert code == 0, out + err
    assert ", 0 secrets re-encrypted" in out, out + err

    # The old key can go: the service works with the new one alone, Procore accepts what it hands out.
    async with serve_mapping(mapping_settings(cfg, token_encryption_keys=NEW)) as url:
        latest = await token(url, by_user, user_company, force=True)
        assert latest.status_code == 200, latest.text
        assert (await token(url, by_service_account, sa_company, force=True)).status_code == 200
    async with httpx.AsyncClient(base_url=sandbox) as procore:
        companies = await procore.get(
            "/rest/v1.0/companies", headers={"Authorization": f"Bearer {latest.json()['access_token']}"}
        )
    assert [c["id"] for c in companies.json()] == [user_company]


async def test_a_ciphertext_copied_into_another_accounts_row_is_refused(
    cfg: StackConfig, sandbox: str, unique: str
) -> None:
    first, second = f"acc-a-{unique}", f"acc-b-{unique}"
    company_a, company_b = await new_company(sandbox, f"A {unique}"), await new_company(sandbox, f"B {unique}")
    schema = cfg.schemas["mapping"]
    async with serve_mapping(mapping_settings(cfg)) as url:
        assert (await connect_service_account(cfg, url, first, company_a))["status"] == "done"
        assert (await connect_service_account(cfg, url, second, company_b))["status"] == "done"
        # Someone with write access to the table moves A's encrypted tokens and secret into B's row.
        await fetch(
            cfg.dsn,
            f"""UPDATE "{schema}".connections b
                   SET access_token = a.access_token, client_secret = a.client_secret, client_id = a.client_id
                  FROM "{schema}".connections a WHERE a.account_id = $1 AND b.account_id = $2""",
            first,
            second,
        )
        refused = await token(url, second, company_b)
        assert refused.status_code == 409, refused.text
        assert "another account" in refused.json()["message"], refused.text
        assert (await token(url, second, company_b, force=True)).status_code == 409
        assert (await token(url, first, company_a)).status_code == 200, "A's own row still works"
