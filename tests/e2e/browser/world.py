"""The data the browser tests walk through: a Procore sandbox company, and a MobiClocks account connected to it
(its own service account), set up for all three modules and mapped, except cost code 26-050 Wiring at Tower A,
which leaves timecards Non publishable. Everything goes in through the system's public edges: the sandbox's
control API, the gateway's HTTP API and MobiClocks events on Kafka."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from shared.events import ReferenceKind, ReferenceUpserted, TimelogUpserted
from shared.topics import Topics
from tests.support.kafka import eventually, produce
from tests.support.mapping import service_account
from tests.support.office import finished

WEEK = date(2026, 11, 16)
"""The Monday of the week the tests look at."""
MON, WED = WEEK, WEEK + timedelta(days=2)
ACCOUNT = "browser-office"
NEW_ACCOUNT = "browser-newco"
PROCORE_LOGIN = "pat@browser-builders.example"

SITES = [("s-tower", "Tower A", "P-100"), ("s-bridge", "Harbor Bridge", "P-200")]
COMPANIES = [("co-acme", "Acme Concrete", "V-1"), ("co-bolt", "Bolt Electric", "V-2")]
EMPLOYEES = [("e1", "Ann Lee", "E001"), ("e2", "Bo Diaz", "E002"), ("e3", "Cy Park", "E003")]
COST_CODES = [("cc-concrete", "Concrete", "03-300"), ("cc-wiring", "Wiring", "26-050")]
PAY_IDS = [("pay-reg", "Regular", "REG")]


@dataclass
class World:
    gateway: str
    sandbox: str
    kafka: str
    topics: Topics
    company_id: int = 0
    seeded: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def wiring_at_tower(self) -> int:
        return int(self.seeded["projects"][0]["cost_codes"][1]["id"])

    @property
    def tower_project(self) -> int:
        return int(self.seeded["projects"][0]["id"])

    async def timelogs(self, logs: list[TimelogUpserted]) -> None:
        for log in logs:
            await produce(self.kafka, self.topics.timelogs, [log], key=f"{ACCOUNT}:{log.job_site_id}".encode())

    async def cell(self, module: str, site: str, day: date) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.gateway, timeout=10) as gw:
            response = await gw.get(f"/api/modules/{module}/cells/{site}/{day}", headers=self.headers)
        return dict(response.json()) if response.status_code == 200 else {"rows": [], "errors": []}

    async def records(self, kind: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.sandbox, timeout=10) as sandbox:
            response = await sandbox.get(f"/_sandbox/records/{kind}", params={"company_id": self.company_id})
        response.raise_for_status()
        return list(response.json())

    async def edit_in_procore(self, kind: str, record_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """A Procore user edits the record (the sandbox's control API)."""
        async with httpx.AsyncClient(base_url=self.sandbox, timeout=10) as sandbox:
            response = await sandbox.patch(f"/_sandbox/records/{kind}/{record_id}", json=fields)
        response.raise_for_status()
        return dict(response.json())


def timelog(
    log_id: str, employee: str, company: str, site: str, day: date, hours: float, **extra: Any
) -> TimelogUpserted:
    return TimelogUpserted(
        account_id=ACCOUNT,
        timelog_id=log_id,
        revision=extra.pop("revision", 1),
        employee_id=employee,
        company_id=company,
        crew_tag=extra.pop("crew_tag", "Pour crew"),
        job_site_id=site,
        work_date=day,
        duration_seconds=int(hours * 3600),
        pay_id="pay-reg",
        **extra,
    )


async def build_world(gateway: str, sandbox: str, kafka: str, topics: Topics) -> World:
    world = World(gateway, sandbox, kafka, topics)
    async with httpx.AsyncClient(base_url=sandbox, timeout=10) as control:
        created = await control.post(
            "/_sandbox/companies",
            json={
                "name": "Browser Builders",
                "projects": [
                    {
                        "name": name,
                        "project_number": number,
                        "cost_codes": [{"full_code": code, "name": n} for _, n, code in COST_CODES],
                    }
                    for _, name, number in SITES
                ],
                "vendors": [{"name": name, "abbreviated_name": number} for _, name, number in COMPANIES],
                "people": [
                    {"first_name": name.split()[0], "last_name": name.split()[1], "employee_id": number}
                    for _, name, number in EMPLOYEES
                ],
            },
        )
        created.raise_for_status()
        world.seeded = created.json()
        world.company_id = int(world.seeded["company_id"])
        user = await control.post(
            "/_sandbox/users", json={"login": PROCORE_LOGIN, "name": "Pat Browser", "company_ids": [world.company_id]}
        )
        user.raise_for_status()

    reference = [
        ReferenceUpserted(account_id=ACCOUNT, kind=kind, entity_id=i, name=n, number=num)
        for kind, rows in (
            (ReferenceKind.JOB_SITE, SITES),
            (ReferenceKind.COMPANY, COMPANIES),
            (ReferenceKind.EMPLOYEE, EMPLOYEES),
            (ReferenceKind.COST_CODE, COST_CODES),
            (ReferenceKind.PAY_ID, PAY_IDS),
        )
        for i, n, num in rows
    ]
    await produce(kafka, topics.reference, reference, key=ACCOUNT.encode())

    async with httpx.AsyncClient(base_url=gateway, timeout=15) as gw:
        login = await gw.post("/api/dev/login", json={"account_id": ACCOUNT, "user_id": "setup-script"})
        login.raise_for_status()
        h = world.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        client_id, secret = await service_account(sandbox, world.company_id)
        connect = {"grant": "client_credentials", "client_id": client_id, "client_secret": secret}
        await finished(gw, h, await gw.post("/api/procore/connection", json=connect, headers=h))
        setup = {
            "procore_company_id": world.company_id,
            "enabled_modules": ["manpower", "timecard", "production_quantity"],
            "two_way": False,
        }
        await finished(gw, h, await gw.put("/api/setup", json=setup, headers=h))
        for entity in ("project", "employee", "payroll_type", "vendor"):
            await finished(gw, h, await gw.post(f"/api/mapping/{entity}/sync", headers=h))
        for entity in ("project", "employee"):
            report = await finished(gw, h, await gw.post(f"/api/mapping/{entity}/auto-map", json={}, headers=h))
            assert report["details"]["mapped"] == len(SITES if entity == "project" else EMPLOYEES), report
        # Pay IDs by hand: Procore's global time types come without the abbreviation auto-map compares.
        options = (await gw.get("/api/mapping/payroll_type", headers=h)).json()["procore_options"]
        regular = next(o["procore_id"] for o in options if o["name"] == "Regular Time")
        await finished(
            gw, h, await gw.put("/api/mappings/payroll_type/pay-reg", json={"procore_id": regular}, headers=h)
        )
        for (mc_id, _, _), vendor_id in zip(COMPANIES, world.seeded["vendors"], strict=True):
            mapped = await gw.put(f"/api/mappings/vendor/{mc_id}", json={"procore_id": vendor_id}, headers=h)
            await finished(gw, h, mapped)
        await finished(gw, h, await gw.post("/api/mapping/cost_code/sync", headers=h))
        for project in world.seeded["projects"]:
            concrete = project["cost_codes"][0]["id"]
            body = {"procore_id": concrete, "procore_project_id": project["id"]}
            await finished(gw, h, await gw.put("/api/mappings/cost_code/cc-concrete", json=body, headers=h))
        # Harbor Bridge's Wiring is mapped; Tower A's is not (the error the tests follow to its mapping row).
        bridge = world.seeded["projects"][1]
        body = {"procore_id": bridge["cost_codes"][1]["id"], "procore_project_id": bridge["id"]}
        await finished(gw, h, await gw.put("/api/mappings/cost_code/cc-wiring", json=body, headers=h))

    await world.timelogs(
        [
            # Harbor Bridge, Monday: one crew of Acme Concrete (a manpower entry to publish, then to conflict).
            timelog("tl-m1", "e1", "co-acme", "s-bridge", MON, 8, cost_code_id="cc-concrete"),
            timelog("tl-m2", "e2", "co-acme", "s-bridge", MON, 6, cost_code_id="cc-concrete"),
            # Tower A, Wednesday: Concrete (publishable) and Wiring (not mapped at Tower A: Non publishable).
            timelog(
                "tl-w1",
                "e1",
                "co-acme",
                "s-tower",
                WED,
                8,
                cost_code_id="cc-concrete",
                quantities=[{"cost_code_id": "cc-concrete", "unit_of_measure": "m3", "units": 4}],
            ),
            timelog("tl-w2", "e2", "co-bolt", "s-tower", WED, 7, cost_code_id="cc-wiring", crew_tag="Electricians"),
            timelog("tl-w3", "e3", "co-bolt", "s-tower", WED, 6, cost_code_id="cc-wiring", crew_tag="Electricians"),
        ]
    )

    async def ready() -> bool:
        tower = await world.cell("timecard", "s-tower", WED)
        bridge = await world.cell("manpower", "s-bridge", MON)
        return len(tower["rows"]) == 3 and len(bridge["rows"]) == 1

    await eventually(ready, bool, timeout_s=45, what="the week's entries")
    return world
