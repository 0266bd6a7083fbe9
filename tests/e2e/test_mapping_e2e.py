"""Setup and Data mapping through the public edges, the whole system as `make run` starts it.

Connect Procore with OAuth (gateway → the sandbox, where the company's Procore user consents → gateway
callback in the same browser: the company is bound to the account), choose it, sync and auto-map through the
gateway's HTTP API, MobiClocks events in through Kafka. A missing cost-code mapping makes the
timecard entry Non publishable naming the cost code and project; mapping it through the API turns
it To do (the latency is printed).
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import httpx
import pytest

from shared.events import ReferenceKind
from tests.support.kafka import eventually
from tests.support.office import (
    connected_for_timecards,
    finished,
    send_references,
    send_timelogs,
    synced_and_auto_mapped,
    timelog,
)
from tests.support.system import System

pytestmark = pytest.mark.e2e
DAY = date(2026, 11, 18)
ACCOUNT = "e2e-mapping"


async def test_mapping_a_missing_cost_code_turns_entries_to_do(system: System, kafka_bootstrap: str) -> None:
    topics = system.topics
    base, sandbox_url = system.ready()

    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
        seeded = (
            await sandbox.post(
                "/_sandbox/companies",
                json={
                    "name": "E2E Mapping",
                    "projects": [
                        {
                            "name": "Tower A",
                            "project_number": "P-100",
                            "cost_codes": [
                                {"full_code": "03-300", "name": "Concrete"},
                                {"full_code": "06-100", "name": "Framing"},
                            ],
                        }
                    ],
                    "people": [{"first_name": "Ann", "last_name": "Lee", "employee_id": "E001"}],
                },
            )
        ).json()
    company_id = seeded["company_id"]
    concrete = seeded["projects"][0]["cost_codes"][0]["id"]
    project = seeded["projects"][0]["id"]

    await send_references(
        kafka_bootstrap,
        topics,
        ACCOUNT,
        [
            (ReferenceKind.JOB_SITE, "s1", "Tower site", "P-100"),
            (ReferenceKind.EMPLOYEE, "e1", "Ann Lee", "E001"),
            (ReferenceKind.PAY_ID, "pay-reg", "Regular", "REG"),
            (ReferenceKind.COST_CODE, "cc-concrete", "Concrete", "03-300"),
        ],
    )

    async with httpx.AsyncClient(base_url=base, timeout=10) as gw:
        auth = await connected_for_timecards(gw, sandbox_url, ACCOUNT, "pat@e2e-mapping.example", company_id)
        connection = (await gw.get("/api/procore/connection", headers=auth)).json()
        assert connection["status"] == "connected"
        assert connection["procore_company_id"] == company_id
        assert [c["procore_company_id"] for c in connection["companies"]] == [company_id]

        for entity in ("project", "employee", "payroll_type"):
            report = await synced_and_auto_mapped(gw, auth, entity)
            assert report["details"]["mapped"] == 1, (entity, report)
        await finished(gw, auth, await gw.post("/api/mapping/cost_code/sync", headers=auth))

        await send_timelogs(
            kafka_bootstrap,
            topics,
            [timelog(ACCOUNT, "tl-1", "e1", "s1", DAY, pay_id="pay-reg", cost_code_id="cc-concrete")],
        )

        async def cell() -> dict[str, Any]:
            response = await gw.get(f"/api/modules/timecard/cells/s1/{DAY}", headers=auth)
            return dict(response.json()) if response.status_code == 200 else {"rows": []}

        blocked = await eventually(
            cell,
            lambda c: len(c["rows"]) == 1 and c["rows"][0]["status"] == "non_publishable",
            timeout_s=30,
            what="Non publishable",
        )
        assert [e["message"] for e in blocked["errors"]] == [
            "Cost code 03-300 Concrete is not mapped for project Tower A"
        ]
        assert blocked["rows"][0]["payroll_item"] == "Regular Time"

        tab = (await gw.get("/api/mapping/cost_code", headers=auth)).json()
        assert tab["procore_project_id"] == project
        assert {o["procore_id"] for o in tab["procore_options"]} >= {concrete}
        mapped = await gw.put(
            "/api/mappings/cost_code/cc-concrete",
            json={"procore_id": concrete, "procore_project_id": project},
            headers=auth,
        )
        started = time.monotonic()
        assert mapped.status_code == 202
        todo = await eventually(cell, lambda c: c["rows"][0]["status"] == "todo", timeout_s=15, what="To do")
        latency = time.monotonic() - started
        print(f"\nmapping → To do: {latency * 1000:.0f} ms (HTTP PUT accepted → cell read as To do, 100 ms polling)")
        assert todo["errors"] == []
        assert latency < 10
