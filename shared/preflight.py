"""`python -m shared.preflight`: check every deployment secret and setting once, before any service starts.

Compose's `${VAR:?}` only says a variable is set. A Fernet key that is not one, a 12-character internal token or
a password with a `@` in it would pass that, and then crash-loop the service that reads it (and leave the ones
waiting on it waiting forever). docker-compose.yml runs this as the one-shot `preflight` job that every service
waits for: it exits 2 with one line per problem, naming the variable and what it must be, and nothing starts.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from shared.settings import INTERNAL_TOKEN_MIN_LENGTH

KAFKA_PASSWORD = re.compile(r"^[A-Za-z0-9._~-]{16,}$")
"""Kafka passwords go into JAAS configuration (deploy/kafka/provision.sh refuses others the same way)."""
URL_SAFE_PASSWORD = re.compile(r"^[A-Za-z0-9._~-]{16,}$")
"""Database role passwords go into DATABASE_URLs."""

KAFKA_PRINCIPALS = ("BROKER", "ADMIN", "AGGREGATOR", "PUBLISHER", "MAPPING", "GATEWAY", "MOBICLOCKS_CORE")
DB_ROLES = ("AGGREGATOR", "PUBLISHER", "MAPPING", "GATEWAY")


def _fernet_keys(value: str) -> str | None:
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        return "is empty: Fernet keys, comma-separated, the encrypting one first"
    for n, key in enumerate(keys, 1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            return (
                f"key {n} is not a Fernet key (32 url-safe base64-encoded bytes); make one with "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            )
    return None


def _internal_token(value: str) -> str | None:
    if len(value) < INTERNAL_TOKEN_MIN_LENGTH:
        return (
            f"must be at least {INTERNAL_TOKEN_MIN_LENGTH} characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return None


def _pattern(pattern: re.Pattern[str], what: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if pattern.match(value) else what

    return check


def _https_url(value: str) -> str | None:
    """As the gateway requires: https, or plain http to a loopback address (compose's demo sign-in)."""
    parts = urlsplit(value)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        return "must be an https URL (or http to a loopback address): MobiClocks core's JSON Web Key Set"
    return None


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def checks() -> dict[str, Callable[[str], str | None]]:
    """Variable → its check (None: fine, else what is wrong)."""
    table: dict[str, Callable[[str], str | None]] = {
        "TOKEN_ENCRYPTION_KEYS": _fernet_keys,
        "INTERNAL_API_TOKEN": _internal_token,
        "JWKS_URL": _https_url,
        "JWT_ISSUER": _not_empty,
        "JWT_AUDIENCE": _not_empty,
    }
    for principal in KAFKA_PRINCIPALS:
        table[f"KAFKA_{principal}_PASSWORD"] = _pattern(
            KAFKA_PASSWORD, "must be at least 16 characters of A-Z a-z 0-9 . _ ~ - (secrets.token_urlsafe makes such)"
        )
    for role in DB_ROLES:
        table[f"{role}_DB_PASSWORD"] = _pattern(
            URL_SAFE_PASSWORD, "must be at least 16 URL-safe characters (A-Z a-z 0-9 . _ ~ -): it goes into a URL"
        )
    return table


def problems(env: Mapping[str, str]) -> list[str]:
    """One line per bad or missing variable among those `env` is expected to carry (all of checks())."""
    found = []
    for name, check in checks().items():
        value = env.get(name)
        if value is None:
            found.append(f"preflight: {name} is required but not set")
        elif (problem := check(value)) is not None:
            found.append(f"preflight: {name} {problem}")
    return found


def main() -> int:
    env = dict(os.environ)
    if not env.get("TOKEN_ENCRYPTION_KEYS") and env.get("TOKEN_ENCRYPTION_KEY"):
        env["TOKEN_ENCRYPTION_KEYS"] = env["TOKEN_ENCRYPTION_KEY"]  # the older single-key setting
    found = problems(env)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(f"preflight: {len(found)} problem(s); fix them in .env (deploy/README.md, 'Run')", file=sys.stderr)
        return 2
    print("preflight: every secret and setting checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
