"""`make run` with the local trace viewer (Arize Phoenix from `make traces-viewer`, or TRACE_VIEWER): its URL is on
the console above the dashboard's, and the services' spans arrive in it. Skipped where no viewer is installed."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from devstack.traces import find_viewer
from tests.support.kafka import eventually
from tests.support.system import System, running_system

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_viewer() is None, reason="no trace viewer installed (make traces-viewer)"),
]


@pytest.fixture
def system(kafka_bootstrap: str, postgres_dsn: str, unique: str) -> Iterator[System]:
    viewer = find_viewer()
    assert viewer is not None
    with running_system(kafka_bootstrap, postgres_dsn, unique, demo=True, extra_env={"TRACE_VIEWER": viewer}) as s:
        yield s


async def test_the_services_traces_reach_the_viewer_printed_above_the_dashboard(system: System, unique: str) -> None:
    system.ready(timeout_s=240)
    (viewer,) = [m.group(1) for line in system.lines if (m := re.search(r"Traces: (http://\S+)", line))]
    assert system.lines[-1].startswith("Dashboard:")
    assert any("Traces:" in line for line in system.lines[-3:])

    async with httpx.AsyncClient(base_url=viewer, timeout=10) as phoenix:

        async def database_users() -> set[str]:
            response = await phoenix.get("/v1/projects/default/spans", params={"limit": 1000})
            spans = response.json()["data"] if response.status_code == 200 else []
            return {str(s["attributes"].get("db.user", "")) for s in spans}

        # The demo connects an account and loads its data: every service queries its database as its own role.
        roles = {f"e2e_{unique}_{service}" for service in ("aggregator", "mapping", "gateway")}
        await eventually(database_users, lambda users: roles <= users, timeout_s=60, what="spans of every service")
