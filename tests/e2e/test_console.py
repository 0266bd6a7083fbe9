"""What `make run` shows on the console before the dashboard is ready: one screen of readable lines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e
SCREEN_LINES = 40
SCREEN_WIDTH = 160


@pytest.fixture
def system(kafka_bootstrap: str, postgres_dsn: str, unique: str) -> Iterator[System]:
    # The demo as `make run` seeds it; LOG_LEVEL unset (INFO), LOG_LEVELS unset (libraries quiet).
    with running_system(kafka_bootstrap, postgres_dsn, unique, demo=True, extra_env={"LOG_LEVEL": "INFO"}) as running:
        yield running


def test_the_console_up_to_the_dashboard_fits_on_one_screen(system: System) -> None:
    system.ready()
    lines = [line.rstrip("\n") for line in system.lines]
    shown = "\n".join(lines)
    assert lines[-1].startswith("Dashboard: http://"), shown
    assert len(lines) <= SCREEN_LINES, f"{len(lines)} lines:\n{shown}"
    assert [line for line in lines if len(line) > SCREEN_WIDTH] == [], shown
    for service in ("sandbox", "aggregator", "mapping", "publisher", "gateway"):
        assert any(f"{service} ready in" in line for line in lines), service
    assert any("demo: account 'demo'" in line for line in lines), shown
    # Group joins, partition assignments and per-request access lines are the libraries' business (their warnings
    # and errors still show).
    chatty = [
        line
        for line in lines
        if any(
            f"{level} {library}" in line
            for level in ("INFO ", "DEBUG")
            for library in ("aiokafka", "faststream", "uvicorn")
        )
    ]
    assert chatty == [], shown
