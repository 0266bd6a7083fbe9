"""Secrets refused at start with one clear line: no token encryption key, a short internal API secret, the internal
API on the public port."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "DATABASE_URL": "postgresql://x",
    "PROCORE_BASE_URL": "http://127.0.0.1:9",
    "PROCORE_LOGIN_URL": "http://127.0.0.1:9",
    "PROCORE_CLIENT_ID": "c",
    "PROCORE_CLIENT_SECRET": "s",
}
KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="


def start(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        env={**clean, **BASE, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_mapping_without_an_encryption_key_is_refused() -> None:
    result = start("mapping", {})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "setting TOKEN_ENCRYPTION_KEYS is required but not set" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("service", ["mapping", "publisher"])
def test_a_short_internal_api_secret_is_refused(service: str) -> None:
    short = "x" * 31
    result = start(service, {"TOKEN_ENCRYPTION_KEYS": KEY, "INTERNAL_API_TOKEN": short})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "setting INTERNAL_API_TOKEN is invalid" in line
    assert "at least 32 characters" in line
    assert short not in line, "the refused secret is not echoed"


def test_the_internal_api_cannot_share_the_public_port() -> None:
    result = start("mapping", {"TOKEN_ENCRYPTION_KEYS": KEY, "HTTP_PORT": "8093", "INTERNAL_HTTP_PORT": "8093"})
    assert result.returncode == 2
    assert "setting INTERNAL_HTTP_PORT is invalid" in result.stderr
    assert "HTTP_PORT" in result.stderr
