"""The Employees tab warns about a mapped person missing from the Procore directory of a project where they have
timecards — the whole system as `make run` starts it: the directory is set in the sandbox, synced by an Employees
sync, and read by the gateway beside the aggregator's entries."""

from __future__ import annotations

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
ACCOUNT = "e2e-directory"


async def test_a_mapped_employee_missing_from_a_project_directory_is_flagged_until_added(
    system: System, kafka_bootstrap: str
) -> None:
    base, sandbox_url = system.ready()
    topics = system.topics
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
        company = {
            "name": "Directory Co",
            "projects": [{"name": "Tower A", "project_number": "P-100"}],
            "people": [
                {"first_name": "Ann", "last_name": "Lee", "employee_id": "E001"},
                {"first_name": "Bob", "last_name": "Ray", "employee_id": "E002"},
            ],
        }
        seeded = (await sandbox.post("/_sandbox/companies", json=company)).json()
        company_id, project = seeded["company_id"], seeded["projects"][0]["id"]
        ann, bob = seeded["people"]
        only_ann = await sandbox.put(
            f"/_sandbox/projects/{project}/people", params={"company_id": company_id}, json={"person_ids": [ann]}
        )
        assert only_ann.status_code == 200, only_ann.text
        await send_references(
            kafka_bootstrap,
            topics,
            ACCOUNT,
            [
                (ReferenceKind.JOB_SITE, "s1", "Tower site", "P-100"),
                (ReferenceKind.EMPLOYEE, "e1", "Ann Lee", "E001"),
                (ReferenceKind.EMPLOYEE, "e2", "Bob Ray", "E002"),
            ],
        )
        async with httpx.AsyncClient(base_url=base, timeout=10) as gw:
            auth = await connected_for_timecards(gw, sandbox_url, ACCOUNT, "pat@e2e-directory.example", company_id)
            for entity, mapped in (("project", 1), ("employee", 2)):
                report = await synced_and_auto_mapped(gw, auth, entity)
                assert report["details"]["mapped"] == mapped, (entity, report)
            # The directories are synced with Employees, which ran before the project was mapped: once more.
            await finished(gw, auth, await gw.post("/api/mapping/employee/sync", headers=auth))
            await send_timelogs(
                kafka_bootstrap,
                topics,
                [timelog(ACCOUNT, f"tl-{who}", who, "s1", DAY, pay_id="pay-reg") for who in ("e1", "e2")],
            )

            async def rows() -> dict[str, Any]:
                tab = (await gw.get("/api/mapping/employee", headers=auth)).json()
                return {r["mobiclocks_id"]: r for r in tab["rows"]}

            flagged = await eventually(rows, lambda r: r["e2"]["warning"] is not None, timeout_s=30, what="warning")
            assert "Tower A" in flagged["e2"]["warning"]
            assert "directory" in flagged["e2"]["warning"]
            assert flagged["e1"]["warning"] is None  # Ann is in the directory

            both = await sandbox.put(
                f"/_sandbox/projects/{project}/people",
                params={"company_id": company_id},
                json={"person_ids": [ann, bob]},
            )
            assert both.status_code == 200
            await finished(gw, auth, await gw.post("/api/mapping/employee/sync", headers=auth))
            assert (await rows())["e2"]["warning"] is None
