"""Setup and Data mapping through the public edges, the whole system as `make run` starts it.

Connect Procore with OAuth (gateway → the sandbox, where the company's Procore user consents → gateway
callback in the same browser: the company is bound to the account), choose it, sync and auto-map through the
gateway's HTTP API, MobiClocks events in through Kafka. A missing cost-code mapping makes the
timecard entry Non publishable naming the cost code and project; mapping it through the API turns
it To do (the latency is printed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from shared.events import ReferenceKind, ReferenceUpserted, TimelogUpserted
from shared.topics import Topics
from tests.support.kafka import eventually, produce
from tests.support.mapping import oauth_round_trip, sandbox_user
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e
DAY = date(2026, 11, 18)
ACCOUNT = "e2e-mapping"


@pytest.fixture
def system(kafka_bootstrap: str, postgres_dsn: str, unique: str) -> Iterator[tuple[System, Topics]]:
    with running_system(kafka_bootstrap, postgres_dsn, unique) as running:
        yield running, running.topics


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
    base, sandbox_url = sys_.ready()

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
        login = "pat@e2e-mapping.example"
        await sandbox_user(sandbox_url, login, [company_id])
        connected = await oauth_round_trip(gw, auth, login)

        async def command(command_id: str) -> dict[str, Any]:
            return dict((await gw.get(f"/api/commands/{command_id}", headers=auth)).json())

        await eventually(
            lambda: command(connected.command_id), lambda r: r["status"] == "done", timeout_s=30, what="connected"
        )
        setup = {"procore_company_id": company_id, "enabled_modules": ["timecard"], "two_way": False}
        await finished(gw, auth, await gw.put("/api/setup", json=setup, headers=auth))
        connection = (await gw.get("/api/procore/connection", headers=auth)).json()
        assert connection["status"] == "connected" and connection["procore_company_id"] == company_id
        assert [c["procore_company_id"] for c in connection["companies"]] == [company_id]

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
