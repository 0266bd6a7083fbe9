"""The fixture most end-to-end tests share: the whole system as `make run` starts it, on the session's broker and
database with this test's own topics, schemas and roles. A module that starts it otherwise (the demo, other
settings) defines a fixture of the same name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.system import System, running_system


@pytest.fixture
def system(kafka_bootstrap: str, postgres_dsn: str, unique: str) -> Iterator[System]:
    with running_system(kafka_bootstrap, postgres_dsn, unique) as running:
        yield running
