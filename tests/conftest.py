"""Session infrastructure for every test: a real Kafka-protocol broker, real PostgreSQL, the Procore sandbox.

Resolution order (devstack.testinfra): environment variables → testcontainers when a Docker
engine answers → local processes (Tansu broker, embedded PostgreSQL). Each test that starts
services gets its own topic prefix and schemas, so tests and runs never collide.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from devstack import testinfra
from shared import db
from tests.sandbox_fixtures import run_sandbox


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with testinfra.kafka_bootstrap() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    with testinfra.postgres_dsn() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def procore_sandbox_url() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


@pytest.fixture
def unique() -> str:
    """A short id for this test's topics, schemas and consumer groups."""
    return f"{testinfra.run_id()}{secrets.token_hex(3)}"


@pytest.fixture
async def schemas(postgres_dsn: str, unique: str) -> AsyncIterator[dict[str, str]]:
    names = {s: f"t_{unique}_{s}" for s in ("aggregator", "publisher", "mapping")}
    yield names
    await db.drop_schemas(postgres_dsn, names.values())
