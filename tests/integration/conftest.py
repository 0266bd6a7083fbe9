"""Fixtures the publisher's integration tests share: a Procore sandbox of each test module's own (the tests change
its settings and faults), a checked handle on it per test, and the stack configuration pointing at it.

A module that needs something else defines a fixture of the same name (pytest uses the nearest one); one that only
adds a step may request the shared fixture under its own name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.sandbox_fixtures import run_sandbox
from tests.support.publisher import Sandbox, checked_sandbox
from tests.support.stack import StackConfig


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """A sandbox of this module's own: its tests change its settings and faults."""
    with run_sandbox() as url:
        yield url


@pytest.fixture
async def sandbox(sandbox_url: str) -> AsyncIterator[Sandbox]:
    """Afterwards every request the sandbox got is checked against the OpenAPI subset, and it is reset."""
    async with checked_sandbox(sandbox_url) as handle:
        yield handle


@pytest.fixture
def cfg(kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str], sandbox_url: str) -> StackConfig:
    return StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox_url)
