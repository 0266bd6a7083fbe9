"""The whole system as `make run` starts it, driven only through its public edges.

Processes: `python -m devstack run` with the session's broker and PostgreSQL, its own Procore
sandbox and the four services. Kafka events in (as MobiClocks core), HTTP to the gateway
(as office staff), Procore records out (read back from the sandbox). Then Ctrl-C: everything
stops, nothing is orphaned.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import httpx
import pytest

from shared.events import TimelogUpserted
from tests.support.account import manpower_ready_account
from tests.support.kafka import eventually, produce
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e
DAY = date(2026, 11, 18)


@pytest.fixture
def system(kafka_bootstrap: str, postgres_dsn: str, unique: str) -> Iterator[System]:
    with running_system(kafka_bootstrap, postgres_dsn, unique) as running:
        yield running


async def test_make_run_publishes_a_timelog_and_stops_cleanly(
    system: System, kafka_bootstrap: str, postgres_dsn: str
) -> None:
    sys_, topics = system, system.topics
    base, sandbox_url = sys_.ready()
    account = "e2e-account"

    async with httpx.AsyncClient(base_url=base, timeout=10) as gw:
        assert (await gw.get("/")).status_code == 200
        assert (await gw.get("/openapi.json")).status_code == 200
        ready = await manpower_ready_account(
            gw,
            sandbox_url,
            kafka_bootstrap,
            topics,
            account=account,
            user="e2e",
            company="E2E",
            site=("site-1", "Tower A"),
            vendor="co-1",
            timeout_s=30,
        )
        auth, seeded = ready.auth, ready.company
        await produce(
            kafka_bootstrap,
            topics.timelogs,
            [
                TimelogUpserted(
                    account_id=account,
                    timelog_id=f"tl-{i}",
                    revision=1,
                    employee_id=f"emp-{i}",
                    company_id="co-1",
                    crew_tag="Pour",
                    job_site_id="site-1",
                    work_date=DAY,
                    duration_seconds=hours * 3600,
                    pay_id="REG",
                )
                for i, hours in ((1, 8), (2, 6))
            ],
            key=f"{account}:site-1".encode(),
        )

        async def rows() -> list[dict[str, object]]:
            response = await gw.get(f"/api/modules/manpower/cells/site-1/{DAY}", headers=auth)
            return list(response.json()["rows"]) if response.status_code == 200 else []

        (row,) = await eventually(rows, lambda r: len(r) == 1 and r[0]["status"] == "todo", timeout_s=30, what="To do")
        assert row["manpower"] == 2
        assert Decimal(str(row["total_hours"])) == 14
        response = await gw.post(
            "/api/modules/manpower/publish",
            json={"action": "publish", "scope": {"kind": "cell", "job_site_id": "site-1", "work_date": str(DAY)}},
            headers=auth,
        )
        assert response.status_code == 202, response.text
        (row,) = await eventually(rows, lambda r: r[0]["status"] == "published", timeout_s=30, what="Published")
        # The history shows the publish's trace: the command and its result were recorded in one trace.
        detail = (await gw.get(f"/api/entries/{row['entry_id']}", headers=auth)).json()
        steps = {step["action"]: step for step in detail["history"]}
        assert steps["publish"]["outcome"] is None, detail["history"]
        assert steps["result"]["outcome"] == "published", detail["history"]
        trace_id = steps["publish"]["trace_id"]
        assert trace_id is not None, detail["history"]
        assert len(trace_id) == 32, detail["history"]
        assert int(trace_id, 16) != 0, detail["history"]
        assert steps["result"]["trace_id"] == trace_id, detail["history"]
        assert steps["publish"]["trace_url"] is None  # no TRACE_URL_TEMPLATE here

    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
        logs = (
            await sandbox.get("/_sandbox/records/manpower_logs", params={"company_id": seeded["company_id"]})
        ).json()
    assert len(logs) == 1
    assert logs[0]["num_workers"] == 2
    assert Decimal(logs[0]["num_hours"]) == 7

    pids = sys_.child_pids()
    assert len(pids) == 5, sys_.lines
    sys_.proc.send_signal(signal.SIGINT)
    remaining = sys_.proc.communicate(timeout=60)[0]
    sys_.lines.append(remaining)
    assert sys_.proc.returncode == 0, "".join(sys_.lines[-40:])
    assert "stopped" in remaining
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
