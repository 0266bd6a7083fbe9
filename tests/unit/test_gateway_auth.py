"""Gateway auth, pure: development and MobiClocks core tokens, the settings that keep dev login at home, the
verifier's choice of check, the rate limiter, and the pages' script policy.

Keys are generated here (RSA 2048, Ed25519); the JWKS over real HTTP is in tests/integration/test_gateway_security.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.openapi.docs import get_swagger_ui_html
from jwt import PyJWK
from pydantic import ValidationError

from services.gateway.auth import TokenVerifier
from services.gateway.config import GatewaySettings, is_loopback
from services.gateway.http_guard import CONTENT_SECURITY_POLICY, page_policy
from services.gateway.rate_limits import CommandGroup, CommandRateLimits, RateLimited
from services.gateway.tokens import (
    CORE_ALGORITHMS,
    DEV_AUDIENCE,
    DEV_ISSUER,
    DEV_RULES,
    NotAuthenticated,
    Principal,
    TokenRules,
    issue_dev_token,
    read_token,
    token_header,
)
from tests.support.tokens import AUDIENCE, ISSUER, CoreKey

SECRET = "unit-test-secret-that-is-long-enough-0123456789"
CORE = TokenRules(ISSUER, AUDIENCE, CORE_ALGORITHMS)
WHO = Principal("u1", "acc-1", frozenset({"procore.publish", "procore.setup"}))
STATIC = Path(__file__).resolve().parents[2] / "services" / "gateway" / "static"


# --- keys and tokens ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> CoreKey:
    return CoreKey("RS256", "rsa-1")


@pytest.fixture(scope="module")
def ed_key() -> CoreKey:
    return CoreKey("EdDSA", "ed-1")


def test_development_token_round_trip() -> None:
    token = issue_dev_token(WHO, SECRET, 3600)
    assert read_token(token, SECRET, DEV_RULES) == WHO
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["iss"]) == (DEV_AUDIENCE, DEV_ISSUER)


def test_expired_and_foreign_development_tokens_are_refused() -> None:
    old = issue_dev_token(WHO, SECRET, 60, now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(NotAuthenticated, match="expired"):
        read_token(old, SECRET, DEV_RULES)
    forged = issue_dev_token(WHO, "another-secret-another-secret-another!", 60)
    with pytest.raises(NotAuthenticated, match="invalid token"):
        read_token(forged, SECRET, DEV_RULES)


@pytest.mark.parametrize("kind", ["RS256", "EdDSA"])
def test_core_tokens_are_read_with_the_public_key(kind: str, rsa_key: CoreKey, ed_key: CoreKey) -> None:
    key = rsa_key if kind == "RS256" else ed_key
    who = read_token(key.sign(permissions=["procore.mapping"]), key.public, CORE)
    assert who == Principal("u1", "acc-1", frozenset({"procore.mapping"}))


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "another-service"}, "aud"),
        ({"aud": DEV_AUDIENCE}, "aud"),  # a development audience is never production's
        ({"iss": None}, "iss"),
        ({"aud": None}, "aud"),
        ({"exp": None}, "exp"),
        ({"sub": None}, "sub"),
        ({"account_id": None}, "account_id"),
        ({"permissions": None}, "permissions"),  # fail closed: no list is not "no permissions"
        ({"permissions": "procore.publish"}, "permissions"),
        ({"account_id": ""}, "account_id"),
        ({"exp": 1_000_000}, "expired"),
    ],
)
def test_core_tokens_that_break_a_rule_are_refused_naming_it(
    rsa_key: CoreKey, overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(NotAuthenticated, match=problem):
        read_token(rsa_key.sign(**overrides), rsa_key.public, CORE)


def test_a_token_signed_with_another_key_is_refused(rsa_key: CoreKey) -> None:
    other = CoreKey("RS256", rsa_key.kid)  # same kid, different key: a forger's guess
    with pytest.raises(NotAuthenticated, match="Signature"):
        read_token(other.sign(), rsa_key.public, CORE)


def test_the_public_key_used_as_an_hmac_secret_is_refused(rsa_key: CoreKey) -> None:
    """Algorithm confusion: HS256 "signed" with the published public key must never verify."""
    pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": rsa_key.kid}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps({"sub": "u1", "iss": ISSUER, "aud": AUDIENCE}).encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(hmac.new(pem, header + b"." + body, hashlib.sha256).digest()).rstrip(b"=")
    forged = b".".join([header, body, signature]).decode()
    with pytest.raises(NotAuthenticated):
        read_token(forged, rsa_key.public, CORE)


def test_an_unsigned_token_is_refused() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(b'{"sub":"u1","account_id":"acc","exp":9999999999}').rstrip(b"=").decode()
    with pytest.raises(NotAuthenticated):
        read_token(f"{header}.{body}.", SECRET, DEV_RULES)
    with pytest.raises(NotAuthenticated):
        token_header("not-a-jwt")


# --- the verifier: which check runs -------------------------------------------------------------------------------


class FixedKeys:
    """A key set of fixed keys (the real one, over HTTP, is in the integration tests)."""

    def __init__(self, *keys: CoreKey) -> None:
        self.keys = {k.kid: k.public for k in keys}

    async def key_for(self, key_id: str) -> PyJWK:
        if key_id not in self.keys:
            raise NotAuthenticated(f"unknown kid {key_id}")
        return self.keys[key_id]


async def test_production_takes_core_tokens_only(rsa_key: CoreKey, ed_key: CoreKey) -> None:
    # FixedKeys stands in for SigningKeys (the verifier only calls key_for).
    production = TokenVerifier(FixedKeys(rsa_key, ed_key), CORE, dev_secret=None)  # type: ignore[arg-type]
    assert (await production.principal(rsa_key.sign())).account_id == "acc-1"
    assert (await production.principal(ed_key.sign())).account_id == "acc-1"
    with pytest.raises(NotAuthenticated, match="'HS256' not accepted"):
        await production.principal(issue_dev_token(WHO, SECRET, 60))
    with pytest.raises(NotAuthenticated, match="aud"):
        await production.principal(rsa_key.sign(aud=DEV_AUDIENCE))
    with pytest.raises(NotAuthenticated, match="kid"):
        await production.principal(jwt.encode({"sub": "u1"}, rsa_key.private, algorithm="RS256"))  # no kid


async def test_development_takes_development_tokens_and_core_tokens_when_configured(rsa_key: CoreKey) -> None:
    development = TokenVerifier(None, None, dev_secret=SECRET)
    assert await development.principal(issue_dev_token(WHO, SECRET, 60)) == WHO
    with pytest.raises(NotAuthenticated, match="'RS256' not accepted"):
        await development.principal(rsa_key.sign())
    both = TokenVerifier(FixedKeys(rsa_key), CORE, dev_secret=SECRET)  # type: ignore[arg-type]
    assert (await both.principal(rsa_key.sign())).user_id == "u1"
    assert await both.principal(issue_dev_token(WHO, SECRET, 60)) == WHO


def test_the_verifier_never_takes_hs256_from_production_settings() -> None:
    verifier = TokenVerifier.from_settings(GatewaySettings(**production_env()))
    assert verifier._dev_secret is None
    assert verifier._core_rules == TokenRules(ISSUER, AUDIENCE, CORE_ALGORITHMS, 30)


# --- settings: production by default, dev login at home only ------------------------------------------------------


def production_env(**overrides: Any) -> dict[str, Any]:
    return {
        "kafka_bootstrap_servers": "127.0.0.1:9092",
        "database_url": "postgresql://x",
        "jwks_url": "https://core.mobiclocks.test/.well-known/jwks.json",
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        **overrides,
    }


def development_env(**overrides: Any) -> dict[str, Any]:
    return {
        "kafka_bootstrap_servers": "127.0.0.1:9092",
        "database_url": "postgresql://x",
        "environment": "development",
        "jwt_secret": SECRET,
        **overrides,
    }


def problems(**values: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        GatewaySettings(**values)
    return {".".join(map(str, e["loc"])): e["msg"] for e in raised.value.errors()}


def test_production_is_the_default_and_needs_core_token_settings() -> None:
    assert GatewaySettings(**production_env()).environment == "production"
    found = problems(kafka_bootstrap_servers="k:9092", database_url="postgresql://x")
    assert set(found) == {"jwks_url", "jwt_issuer", "jwt_audience"}
    assert "required in production" in found["jwks_url"]


def test_production_refuses_development_settings() -> None:
    assert "development only" in problems(**production_env(jwt_secret=SECRET))["jwt_secret"]
    assert "ENVIRONMENT=development" in problems(**production_env(dev_login=True, http_host="127.0.0.1"))["dev_login"]
    assert "audience of development tokens" in problems(**production_env(jwt_audience=DEV_AUDIENCE))["jwt_audience"]
    assert "https" in problems(**production_env(jwks_url="http://core.mobiclocks.test/jwks"))["jwks_url"]
    GatewaySettings(**production_env(jwks_url="http://127.0.0.1:9999/jwks"))  # a loopback sidecar may be plain http


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "gateway.example.com", ""])
def test_dev_login_refuses_a_host_beyond_loopback(host: str) -> None:
    found = problems(**development_env(dev_login=True, http_host=host))
    assert list(found) == ["dev_login"]
    assert "HTTP_HOST on loopback" in found["dev_login"]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_dev_login_in_development_on_loopback_starts(host: str) -> None:
    assert is_loopback(host)
    assert GatewaySettings(**development_env(dev_login=True, http_host=host)).dev_login


def test_development_needs_a_long_secret_and_valid_rates() -> None:
    assert "at least 32" in problems(**development_env(jwt_secret="short"))["jwt_secret"]
    assert "30/minute" in problems(**development_env(rate_limit_publish="lots"))["rate_limit_publish"]
    assert "storage URI" in problems(**development_env(rate_limit_storage="nowhere"))["rate_limit_storage"]


def run_gateway(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG")}
    clean.update({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "DATABASE_URL": "postgresql://x", **env})
    return subprocess.run(
        [sys.executable, "-m", "services.gateway"], env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DEV_LOGIN": "true", "JWT_SECRET": SECRET}, "needs ENVIRONMENT=development"),
        (
            {"DEV_LOGIN": "true", "ENVIRONMENT": "development", "JWT_SECRET": SECRET, "HTTP_HOST": "0.0.0.0"},
            "needs HTTP_HOST on loopback",
        ),
    ],
)
def test_the_gateway_refuses_to_start_with_dev_login_away_from_home(env: dict[str, str], named: str) -> None:
    result = run_gateway(env)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "DEV_LOGIN" in line]
    assert len(lines) == 1, result.stderr
    assert "setting DEV_LOGIN is invalid" in lines[0], result.stderr
    assert named in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# --- rate limits --------------------------------------------------------------------------------------------------


async def test_a_rate_limit_counts_per_account_and_group_and_says_when_to_retry() -> None:
    limits = CommandRateLimits({g: "2/minute" for g in CommandGroup})
    for _ in range(2):
        await limits.hit("acc-1", CommandGroup.PUBLISH)
    with pytest.raises(RateLimited) as raised:
        await limits.hit("acc-1", CommandGroup.PUBLISH)
    assert 1 <= raised.value.retry_after_s <= 60
    assert "publish" in str(raised.value)
    assert "2 per 1 minute" in str(raised.value)
    await limits.hit("acc-2", CommandGroup.PUBLISH)  # another account has its own budget
    await limits.hit("acc-1", CommandGroup.SYNC)  # and so has another kind of command


# --- pages: no inline script anywhere -----------------------------------------------------------------------------


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on") or name == "style" or (value or "").strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}=…>")
        if tag == "script" and not dict(attrs).get("src"):
            self.problems.append("inline <script>")


@pytest.mark.parametrize("page", ["index.html"])
def test_the_dashboard_has_no_inline_script_handlers_or_styles(page: str) -> None:
    parser = _Inline()
    parser.feed((STATIC / page).read_text())
    assert parser.problems == []


def test_the_dev_login_page_loads_its_script_from_a_file() -> None:
    from services.gateway.dev_login import DEV_PAGE

    parser = _Inline()
    parser.feed(DEV_PAGE.format(account="a", user="u", token="t", next="/"))
    assert parser.problems == []
    assert (STATIC / "dev-login.js").exists()


@pytest.mark.parametrize("script", ["app.js", "mapping.js", "dev-login.js"])
def test_scripts_build_no_inline_handlers(script: str) -> None:
    text = (STATIC / script).read_text()
    for pattern in ("onclick=", "onload=", "onerror=", "eval(", "new Function(", 'setAttribute("on', "javascript:"):
        assert pattern not in text, pattern


def test_the_policy_allows_no_inline_script() -> None:
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_the_docs_page_policy_allows_exactly_its_own_scripts() -> None:
    html = bytes(get_swagger_ui_html(openapi_url="/openapi.json", title="t").body).decode()
    policy = page_policy(html)
    script_src = next(p for p in policy.split("; ") if p.startswith("script-src"))
    assert "'sha256-" in script_src
    assert "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    changed = page_policy(html.replace("deepLinking", "deepLinkingX"))
    assert changed != policy  # another inline script is another hash
