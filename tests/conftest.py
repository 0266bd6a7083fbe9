"""Session infrastructure for every test: a real Kafka-protocol broker, real PostgreSQL, the Procore sandbox.

Resolution order (devstack.testinfra): environment variables → testcontainers when a Docker
engine answers → local processes (Tansu broker, embedded PostgreSQL). Each test that starts
services gets its own topic prefix, schemas and database roles, so tests and runs never collide.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from devstack import testinfra
from tests.sandbox_fixtures import run_sandbox
from tests.support.database import ProvisionedDatabase, provisioned


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
async def database(postgres_dsn: str, unique: str) -> AsyncIterator[ProvisionedDatabase]:
    """This test's roles and schemas (`t_<unique>_<service>`), as `make run` and compose provision them; each
    service connects as its own role. Dropped afterwards: roles are cluster-wide."""
    async with provisioned(postgres_dsn, f"t_{unique}_") as provisioned_database:
        yield provisioned_database


@pytest.fixture
def schemas(database: ProvisionedDatabase) -> dict[str, str]:
    """service → its schema, provisioned for this test (owned by the service's role)."""
    return database.schemas
