"""PROCORE_LOGIN_URL: Procore's login host is not its API host, so it defaults to the base URL only in development."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from services.mapping.config import MappingSettings

BASE = {
    "kafka_bootstrap_servers": "k:9092",
    "database_url": "postgresql://x",
    "procore_base_url": "https://api.example",
    "procore_client_id": "c",
    "procore_client_secret": "s",
}


def test_outside_development_the_login_host_must_be_named() -> None:
    with pytest.raises(ValidationError, match="login host"):
        MappingSettings.model_validate(BASE)
    named = MappingSettings.model_validate(BASE | {"procore_login_url": "https://login.example"})
    assert named.login_url == "https://login.example"


def test_in_development_it_defaults_to_the_base_url() -> None:
    assert MappingSettings.model_validate(BASE | {"environment": "development"}).login_url == "https://api.example"


def test_the_service_refuses_to_start_with_one_clear_line() -> None:
    env = {k.upper(): v for k, v in BASE.items()} | {
        "TOKEN_ENCRYPTION_KEYS": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.mapping"], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "setting PROCORE_LOGIN_URL is invalid" in done.stderr
    assert "ENVIRONMENT=development" in done.stderr
