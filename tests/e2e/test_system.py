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

from shared.events import ReferenceKind, ReferenceUpserted, TimelogUpserted
from tests.support.kafka import eventually, produce
from tests.support.mapping import service_account
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
        # The company's own service account proves the company is this account's.
        client_id, secret = await service_account(sandbox_url, seeded["company_id"])
        connect = await gw.post(
            "/api/procore/connection",
            json={"grant": "client_credentials", "client_id": client_id, "client_secret": secret},
            headers=auth,
        )
        assert connect.status_code == 202, connect.text
        await eventually(
            lambda: gw.get(f"/api/commands/{connect.json()['command_id']}", headers=auth),
            lambda r: r.json()["status"] == "done",
            timeout_s=30,
            what="connected",
        )
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
