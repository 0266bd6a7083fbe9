"""The whole system as `make run` starts it, driven only through its public edges.

Processes: `python -m devstack run` with the session's broker and PostgreSQL, its own Procore
sandbox and the four services. Kafka events in (as MobiClocks core), HTTP to the gateway
(as office staff), Procore records out (read back from the sandbox). Then Ctrl-C: everything
stops, nothing is orphaned.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from devstack.ports import free_port
from shared import db
from shared.events import ReferenceKind, ReferenceUpserted, TimelogUpserted
from shared.topics import Topics
from tests.support.kafka import eventually, produce

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 18)


class System:
    def __init__(self, proc: subprocess.Popen[str], lines: list[str]) -> None:
        self.proc = proc
        self.lines = lines

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            if line:
                self.lines.append(line)
                if match := re.search(pattern, line):
                    return match
            elif self.proc.poll() is not None:
                break
        raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(self.lines[-60:])}")

    def child_pids(self) -> list[int]:
        return [int(m.group(1)) for line in self.lines if (m := re.search(r"started \w+ \(pid (\d+)\)", line))]


@pytest.fixture
def system(kafka_bootstrap: str, postgres_dsn: str, unique: str) -> Iterator[tuple[System, Topics, str]]:
    prefix = f"{unique}."
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": postgres_dsn,
        "TOPIC_PREFIX": prefix,
        "DEVSTACK_SCHEMA_PREFIX": f"e2e_{unique}_",
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROCORE_BASE_URL", None)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "run", "--no-demo", "--gateway-port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    sys_ = System(proc, [])
    try:
        yield sys_, Topics(prefix), f"e2e_{unique}_"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        asyncio.run(
            db.drop_schemas(postgres_dsn, [f"e2e_{unique}_{s}" for s in ("aggregator", "publisher", "mapping")])
        )


async def test_make_run_publishes_a_timelog_and_stops_cleanly(
    system: tuple[System, Topics, str], kafka_bootstrap: str, postgres_dsn: str
) -> None:
    sys_, topics, _ = system
    dashboard = sys_.wait_for(r"^Dashboard: (http://\S+)", timeout_s=120).group(1)
    sandbox_url = next(m.group(1) for line in sys_.lines if (m := re.search(r"Procore sandbox: (\S+)", line)))
    base = dashboard.split("/dev/login")[0]
    account = "e2e-account"

    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
        seeded = (
            await sandbox.post(
                "/_sandbox/companies",
                json={"name": "E2E", "projects": [{"name": "Tower A"}], "vendors": [{"name": "Acme"}]},
            )
        ).json()
    async with httpx.AsyncClient(base_url=base, timeout=10) as gw:
        assert (await gw.get("/")).status_code == 200
        assert (await gw.get("/openapi.json")).status_code == 200
        login = await gw.post(
            "/api/dev/login",
            json={
                "account_id": account,
                "user_id": "e2e",
                "permissions": ["procore.publish", "procore.mapping", "procore.setup"],
            },
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        connect = await gw.post("/api/procore/connection", json={"grant": "client_credentials"}, headers=auth)
        assert connect.status_code == 202, connect.text
        setup = {"procore_company_id": seeded["company_id"], "enabled_modules": ["manpower"], "two_way": False}
        assert (await gw.put("/api/setup", json=setup, headers=auth)).status_code == 202
        for entity, mc_id, procore_id in (
            ("project", "site-1", seeded["projects"][0]["id"]),
            ("vendor", "co-1", seeded["vendors"][0]),
        ):
            response = await gw.put(f"/api/mappings/{entity}/{mc_id}", json={"procore_id": procore_id}, headers=auth)
            assert response.status_code == 202, response.text

        await produce(
            kafka_bootstrap,
            topics.reference,
            [ReferenceUpserted(account_id=account, kind=ReferenceKind.JOB_SITE, entity_id="site-1", name="Tower A")],
        )
        await produce(
            kafka_bootstrap,
            topics.timelogs,
            [
                TimelogUpserted(
                    account_id=account, timelog_id=f"tl-{i}", revision=1, employee_id=f"emp-{i}", company_id="co-1",
                    crew_tag="Pour", job_site_id="site-1", work_date=DAY, duration_seconds=hours * 3600, pay_id="REG",
                )
                for i, hours in ((1, 8), (2, 6))
            ],
            key=f"{account}:site-1".encode(),
        )  # fmt: skip

        async def rows() -> list[dict[str, object]]:
            response = await gw.get(f"/api/modules/manpower/cells/site-1/{DAY}", headers=auth)
            return list(response.json()["rows"]) if response.status_code == 200 else []

        (row,) = await eventually(rows, lambda r: len(r) == 1 and r[0]["status"] == "todo", timeout_s=30, what="To do")
        assert row["manpower"] == 2 and Decimal(str(row["total_hours"])) == 14
        response = await gw.post(
            "/api/modules/manpower/publish",
            json={"action": "publish", "scope": {"kind": "cell", "job_site_id": "site-1", "work_date": str(DAY)}},
            headers=auth,
        )
        assert response.status_code == 202, response.text
        await eventually(rows, lambda r: r[0]["status"] == "published", timeout_s=30, what="Published")

    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
        logs = (
            await sandbox.get("/_sandbox/records/manpower_logs", params={"company_id": seeded["company_id"]})
        ).json()
    assert len(logs) == 1 and logs[0]["num_workers"] == 2 and Decimal(logs[0]["num_hours"]) == 7

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
