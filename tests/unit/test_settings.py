"""A missing or invalid setting stops a service at start with one clear line naming it."""

import os
import subprocess
import sys

import pytest

SERVICES = ["aggregator", "publisher", "mapping", "gateway"]


def run_service(name: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", f"services.{name}"], env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("service", SERVICES)
def test_missing_settings_are_named(service: str) -> None:
    result = run_service(service, {})
    assert result.returncode == 2, result.stderr
    assert "setting KAFKA_BOOTSTRAP_SERVERS is required but not set" in result.stderr
    assert "setting DATABASE_URL is required but not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_is_named() -> None:
    result = run_service(
        "aggregator",
        {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "DATABASE_URL": "postgresql://x", "HTTP_PORT": "not-a-port"},
    )
    assert result.returncode == 2
    assert "setting HTTP_PORT is invalid" in result.stderr
