"""Setup and Data mapping through the public edges, the whole system as `make run` starts it.

Connect Procore with OAuth (gateway → sandbox → gateway callback), sync and auto-map through the
gateway's HTTP API, MobiClocks events in through Kafka. A missing cost-code mapping makes the
timecard entry Non publishable naming the cost code and project; mapping it through the API turns
it To do (the latency is printed).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from devstack.ports import free_port
from shared import db
from shared.events import ReferenceKind, ReferenceUpserted, TimelogUpserted
from shared.topics import Topics
from tests.e2e.test_system import ROOT, System
from tests.support.kafka import eventually, produce
from tests.support.mapping import oauth_round_trip

pytestmark = pytest.mark.e2e
DAY = date(2026, 11, 18)
ACCOUNT = "e2e-mapping"


@pytest.fixture
def system(kafka_bootstrap: str, postgres_dsn: str, unique: str) -> Iterator[tuple[System, Topics]]:
    prefix = f"{unique}."
    schema_prefix = f"e2m_{unique}_"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": postgres_dsn,
        "TOPIC_PREFIX": prefix,
        "DEVSTACK_SCHEMA_PREFIX": schema_prefix,
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
    try:
        yield System(proc, []), Topics(prefix)
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        schemas = [f"{schema_prefix}{s}" for s in ("aggregator", "publisher", "mapping")]
        asyncio.run(db.drop_schemas(postgres_dsn, schemas))


async def finished(gw: httpx.AsyncClient, auth: dict[str, str], accepted: httpx.Response) -> dict[str, Any]:
    assert accepted.status_code == 202, accepted.text
    command_id = accepted.json()["command_id"]

    async def probe() -> dict[str, Any]:
        return dict((await gw.get(f"/api/commands/{command_id}", headers=auth)).json())

    result = await eventually(probe, lambda r: r["status"] != "pending", timeout_s=30, what=f"command {command_id}")
    assert result["status"] == "done", result
    return result


async def test_mapping_a_missing_cost_code_turns_entries_to_do(
    system: tuple[System, Topics], kafka_bootstrap: str
) -> None:
    sys_, topics = system
    dashboard = sys_.wait_for(r"^Dashboard: (http://\S+)", timeout_s=120).group(1)
    sandbox_url = next(m.group(1) for line in sys_.lines if (m := re.search(r"Procore sandbox: (\S+)", line)))
    base = dashboard.split("/dev/login")[0]

    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
        seeded = (
            await sandbox.post(
                "/_sandbox/companies",
                json={
                    "name": "E2E Mapping",
                    "projects": [{"name": "Tower A", "project_number": "P-100",
                                  "cost_codes": [{"full_code": "03-300", "name": "Concrete"},
                                                 {"full_code": "06-100", "name": "Framing"}]}],
                    "people": [{"first_name": "Ann", "last_name": "Lee", "employee_id": "E001"}],
                },
            )
        ).json()  # fmt: skip
    company_id = seeded["company_id"]
    concrete = seeded["projects"][0]["cost_codes"][0]["id"]
    project = seeded["projects"][0]["id"]

    await produce(
        kafka_bootstrap,
        topics.reference,
        [
            ReferenceUpserted(account_id=ACCOUNT, kind=kind, entity_id=i, name=n, number=num)
            for kind, i, n, num in (
                (ReferenceKind.JOB_SITE, "s1", "Tower site", "P-100"),
                (ReferenceKind.EMPLOYEE, "e1", "Ann Lee", "E001"),
                (ReferenceKind.PAY_ID, "pay-reg", "Regular", "REG"),
                (ReferenceKind.COST_CODE, "cc-concrete", "Concrete", "03-300"),
            )
        ],
        key=ACCOUNT.encode(),
    )

    async with httpx.AsyncClient(base_url=base, timeout=10) as gw:
        login = await gw.post("/api/dev/login", json={"account_id": ACCOUNT, "user_id": "office"})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        setup = {"procore_company_id": company_id, "enabled_modules": ["timecard"], "two_way": False}
        assert (await gw.put("/api/setup", json=setup, headers=auth)).status_code == 202

        connected = await oauth_round_trip(gw, auth)

        async def command(command_id: str) -> dict[str, Any]:
            return dict((await gw.get(f"/api/commands/{command_id}", headers=auth)).json())

        await eventually(lambda: command(connected), lambda r: r["status"] == "done", timeout_s=30, what="connected")
        connection = (await gw.get("/api/procore/connection", headers=auth)).json()
        assert connection["status"] == "connected" and connection["procore_company_id"] == company_id

        for entity in ("project", "employee", "payroll_type"):
            await finished(gw, auth, await gw.post(f"/api/mapping/{entity}/sync", headers=auth))
            report = await finished(gw, auth, await gw.post(f"/api/mapping/{entity}/auto-map", json={}, headers=auth))
            assert report["details"]["mapped"] == 1, (entity, report)
        await finished(gw, auth, await gw.post("/api/mapping/cost_code/sync", headers=auth))

        await produce(
            kafka_bootstrap,
            topics.timelogs,
            [
                TimelogUpserted(
                    account_id=ACCOUNT, timelog_id="tl-1", revision=1, employee_id="e1", company_id="co-1",
                    job_site_id="s1", work_date=DAY, duration_seconds=8 * 3600, pay_id="pay-reg",
                    cost_code_id="cc-concrete",
                )
            ],
            key=f"{ACCOUNT}:s1".encode(),
        )  # fmt: skip

        async def cell() -> dict[str, Any]:
            response = await gw.get(f"/api/modules/timecard/cells/s1/{DAY}", headers=auth)
            return dict(response.json()) if response.status_code == 200 else {"rows": []}

        blocked = await eventually(
            cell, lambda c: len(c["rows"]) == 1 and c["rows"][0]["status"] == "non_publishable", timeout_s=30,
            what="Non publishable",
        )  # fmt: skip
        assert [e["message"] for e in blocked["errors"]] == [
            "Cost code 03-300 Concrete is not mapped for project Tower A"
        ]
        assert blocked["rows"][0]["payroll_item"] == "Regular Time"

        tab = (await gw.get("/api/mapping/cost_code", headers=auth)).json()
        assert tab["procore_project_id"] == project
        assert {o["procore_id"] for o in tab["procore_options"]} >= {concrete}
        mapped = await gw.put(
            "/api/mappings/cost_code/cc-concrete", json={"procore_id": concrete, "procore_project_id": project},
            headers=auth,
        )  # fmt: skip
        started = time.monotonic()
        assert mapped.status_code == 202
        todo = await eventually(cell, lambda c: c["rows"][0]["status"] == "todo", timeout_s=15, what="To do")
        latency = time.monotonic() - started
        print(f"\nmapping → To do: {latency * 1000:.0f} ms (HTTP PUT accepted → cell read as To do, 100 ms polling)")
        assert todo["errors"] == []
        assert latency < 10
