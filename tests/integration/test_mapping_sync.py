"""Sync, auto-map and manual mapping in the mapping service, against the sandbox over real HTTP.

Commands go straight onto mapping.commands (as the gateway sends them), so the mapping service's
own checks are what is tested here: permissions, two-way, one-to-one tabs, synced lists.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from sandbox.procore import SandboxState
from shared.broker import ensure_topics
from shared.events import (
    AutoMap,
    Command,
    ConfigureSetup,
    Module,
    ProcoreEntity,
    ReferenceKind,
    ReferenceUpserted,
    SetMapping,
    SyncProcoreEntities,
)
from tests.sandbox_fixtures import run_sandbox
from tests.support.kafka import consume, eventually, produce
from tests.support.mapping import connect_service_account, fetch, mapping_settings, outcome, serve_mapping
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration

ADMIN = ["procore.setup", "procore.mapping"]
P = ProcoreEntity


@dataclass
class Sandbox:
    url: str
    state: SandboxState


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    state = SandboxState()
    with run_sandbox(state) as url:
        yield Sandbox(url, state)


@dataclass
class Ctx:
    cfg: StackConfig
    account: str
    company: dict[str, Any]
    sandbox: Sandbox

    async def send(self, *commands: Command) -> list[dict[str, Any]]:
        """Send commands in order (one key: one partition) and wait for each outcome."""
        await produce(self.cfg.kafka, self.cfg.topics.mapping_commands, list(commands), key=self.account.encode())
        return [await outcome(self.cfg.dsn, self.cfg.schemas["mapping"], c.event_id) for c in commands]

    async def reference(self, kind: ReferenceKind, *rows: tuple[str, str, str | None]) -> None:
        events = [
            ReferenceUpserted(account_id=self.account, kind=kind, entity_id=i, name=n, number=num) for i, n, num in rows
        ]
        await produce(self.cfg.kafka, self.cfg.topics.reference, list(events), key=self.account.encode())

    async def mappings(self, entity: ProcoreEntity) -> dict[tuple[str, int], tuple[int, str, str | None]]:
        rows = await fetch(
            self.cfg.dsn,
            "SELECT mobiclocks_id, procore_project_id, procore_id, source, broken_reason"
            f' FROM "{self.cfg.schemas["mapping"]}".mappings WHERE account_id = $1 AND entity = $2',
            self.account,
            entity.value,
        )
        return {
            (r["mobiclocks_id"], r["procore_project_id"]): (r["procore_id"], r["source"], r["broken_reason"])
            for r in rows
        }

    def sync(self, entity: ProcoreEntity, permissions: list[str] | None = None) -> SyncProcoreEntities:
        return SyncProcoreEntities(
            account_id=self.account,
            entity=entity,
            requested_by="mapper",
            permissions=ADMIN if permissions is None else permissions,
        )

    def auto(self, entity: ProcoreEntity, overwrite: bool = False) -> AutoMap:
        return AutoMap(
            account_id=self.account, entity=entity, overwrite_manual=overwrite, requested_by="mapper", permissions=ADMIN
        )

    def map(
        self,
        entity: ProcoreEntity,
        mc: str,
        procore_id: int | None,
        project: int | None = None,
        permissions: list[str] | None = None,
    ) -> SetMapping:
        return SetMapping(
            account_id=self.account,
            entity=entity,
            mobiclocks_id=mc,
            procore_id=procore_id,
            procore_project_id=project,
            requested_by="mapper",
            permissions=ADMIN if permissions is None else permissions,
        )


COMPANY = {
    "name": "Sync Builders",
    "projects": [
        {
            "name": "Tower A",
            "project_number": "P-100",
            "cost_codes": [{"full_code": "03-300", "name": "Concrete"}, {"full_code": "06-100", "name": "Framing"}],
        },
        {
            "name": "Harbor Bridge",
            "project_number": "P-200",
            "cost_codes": [{"full_code": "03-300", "name": "Concrete"}],
        },
        {"name": "Twin 1", "project_number": "P-900"},
        {"name": "Twin 2", "project_number": "p-900 "},
    ],
    "vendors": [{"name": f"Vendor {i:02d}"} for i in range(1, 13)],
    "people": [
        {"first_name": "Ann", "last_name": "Lee", "employee_id": "E001"},
        {"first_name": "Bob", "last_name": "Ray", "employee_id": "E002"},
        {"first_name": "Office", "last_name": "Clerk", "employee_id": "X1", "is_employee": False},
    ],
    "work_classifications": [{"name": "Journeyman", "abbreviation": "JM"}],
}


@pytest.fixture
async def ctx(
    sandbox: Sandbox, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> AsyncIterator[Ctx]:
    async with httpx.AsyncClient(base_url=sandbox.url) as control:
        await control.put("/_sandbox/settings", json={"per_page_max": 5})
        company = (await control.post("/_sandbox/companies", json=COMPANY)).json()
        await control.delete("/_sandbox/requests")
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox.url)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    async with serve_mapping(mapping_settings(cfg)) as mapping_url:  # lifespan in the server's own task
        c = Ctx(cfg, f"acc-{unique}", company, sandbox)
        connected = await connect_service_account(cfg, mapping_url, c.account, company["company_id"])
        assert connected["status"] == "done", connected
        setup = ConfigureSetup(
            account_id=c.account,
            procore_company_id=company["company_id"],
            enabled_modules=list(Module),
            requested_by="admin",
            permissions=ADMIN,
        )
        assert [o["status"] for o in await c.send(setup)] == ["done"]
        yield c


async def requests_to(sandbox: Sandbox, path: str, company_id: int) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=sandbox.url) as control:
        log = (await control.get("/_sandbox/requests", params={"path": path, "company_id": company_id})).json()
    return list(log if isinstance(log, list) else log["requests"])


async def test_sync_reads_every_page(ctx: Ctx) -> None:
    (done,) = await ctx.send(ctx.sync(P.VENDOR))
    assert done["status"] == "done", done
    assert done["details"]["total"] == 12, done
    pages = await requests_to(ctx.sandbox, "/rest/v1.0/vendors", ctx.company["company_id"])
    assert sorted(int(r["query_params"]["page"][0]) for r in pages) == [1, 2, 3]
    assert all(r["headers"]["procore-company-id"] == str(ctx.company["company_id"]) for r in pages)
    (people,) = await ctx.send(ctx.sync(P.EMPLOYEE))
    assert people["details"]["total"] == 2  # filters[is_employee]=true: the office clerk is no employee


async def test_auto_map_projects_and_cost_codes_per_mapped_project(ctx: Ctx) -> None:
    tower = ctx.company["projects"][0]["id"]
    await ctx.reference(
        ReferenceKind.JOB_SITE,
        ("s-tower", "Tower site", " p-100"),
        ("s-bridge", "Bridge", None),
        ("s-twin", "Twin", "P-900"),
        ("s-none", "Nowhere", "P-404"),
    )
    await ctx.reference(
        ReferenceKind.COST_CODE, ("cc-concrete", "Concrete", "03-300"), ("cc-frame", "Framing", "06-100")
    )

    # Cost codes before any project is mapped: nothing to sync, nothing shown.
    (early,) = await ctx.send(ctx.sync(P.COST_CODE))
    assert early["status"] == "done"
    assert "no Procore project is mapped" in early["message"]

    sync, auto = await ctx.send(ctx.sync(P.PROJECT), ctx.auto(P.PROJECT))
    assert sync["details"]["total"] == 4
    assert (auto["details"]["mapped"], auto["details"]["skipped"], auto["details"]["ambiguous"]) == (1, 2, 1)
    assert await ctx.mappings(P.PROJECT) == {("s-tower", 0): (tower, "auto", None)}

    # Only the mapped project's cost codes are synced and auto-mapped (the others' stay unsynced).
    sync, auto = await ctx.send(ctx.sync(P.COST_CODE), ctx.auto(P.COST_CODE))
    assert sync["details"]["projects"] == [tower]
    assert sync["details"]["total"] == 2
    calls = await requests_to(ctx.sandbox, "/rest/v1.0/cost_codes", ctx.company["company_id"])
    assert {r["query_params"]["project_id"][0] for r in calls} == {str(tower)}
    codes = {c["full_code"]: c["id"] for c in ctx.company["projects"][0]["cost_codes"]}
    assert await ctx.mappings(P.COST_CODE) == {
        ("cc-concrete", tower): (codes["03-300"], "auto", None),
        ("cc-frame", tower): (codes["06-100"], "auto", None),
    }


async def test_a_cost_code_that_disappears_from_procore_breaks_its_mapping(ctx: Ctx) -> None:
    tower = ctx.company["projects"][0]["id"]
    concrete = ctx.company["projects"][0]["cost_codes"][0]["id"]
    await ctx.reference(ReferenceKind.JOB_SITE, ("s-tower", "Tower site", "P-100"))
    await ctx.reference(ReferenceKind.COST_CODE, ("cc-concrete", "Concrete", "03-300"))
    outcomes = await ctx.send(
        ctx.sync(P.PROJECT),
        ctx.map(P.PROJECT, "s-tower", tower),
        ctx.sync(P.COST_CODE),
        ctx.map(P.COST_CODE, "cc-concrete", concrete, tower),
    )
    assert [o["status"] for o in outcomes] == ["done"] * 4, outcomes

    del (
        ctx.sandbox.state.companies[ctx.company["company_id"]].projects[tower].cost_codes[concrete]
    )  # deleted in Procore
    (resync,) = await ctx.send(ctx.sync(P.COST_CODE))
    assert resync["details"]["gone"] == 1, resync
    assert resync["details"]["broken"] == 1, resync
    mapping = (await ctx.mappings(P.COST_CODE))[("cc-concrete", tower)]
    assert mapping[2] == "Procore cost code Concrete no longer exists in Procore"

    # setup, connection, project, cost code, cost code cleared
    changes = [json.loads(r.value) for r in await consume(ctx.cfg.kafka, ctx.cfg.topics.mapping_changes, 5)]
    cleared = [c for c in changes if c["type"] == "mapping.changed" and c["entity"] == "cost_code"]
    assert cleared[-1]["procore_id"] is None
    assert cleared[-1]["procore_project_id"] == tower
    assert "no longer exists" in cleared[-1]["broken_reason"]

    (again,) = await ctx.send(ctx.map(P.COST_CODE, "cc-concrete", concrete, tower))
    assert again["status"] == "rejected"
    assert "no longer exists in Procore" in again["message"]


async def test_manual_mapping_rules_and_payroll_names(ctx: Ctx) -> None:
    ann, bob = ctx.company["people"][:2]
    reg = ctx.company["timecard_time_types"][0]["id"]
    tower = ctx.company["projects"][0]["id"]
    await ctx.reference(ReferenceKind.EMPLOYEE, ("e1", "Ann Lee", "E001"), ("e2", "Ann L.", None))
    await ctx.reference(ReferenceKind.PAY_ID, ("pay-reg", "Regular", "REG"), ("pay-std", "Standard", None))
    results = await ctx.send(
        ctx.sync(P.EMPLOYEE),
        ctx.map(P.EMPLOYEE, "e1", ann),
        ctx.map(P.EMPLOYEE, "e2", ann),  # one person, two employees: refused
        ctx.map(P.EMPLOYEE, "e2", 987654321),  # not in the synced list: refused
        ctx.sync(P.PAYROLL_TYPE),
        ctx.map(P.PAYROLL_TYPE, "pay-reg", reg),
        ctx.map(P.PAYROLL_TYPE, "pay-std", reg),  # several pay IDs, one payroll type: fine
        ctx.map(P.COST_CODE, "cc", 1, tower),  # the project is not mapped yet
        ctx.map(P.EMPLOYEE, "e1", None),
        ctx.map(P.EMPLOYEE, "e2", bob, permissions=["procore.publish"]),  # no mapping permission
    )
    assert [r["status"] for r in results] == [
        "done",
        "done",
        "rejected",
        "rejected",
        "done",
        "done",
        "done",
        "rejected",
        "done",
        "rejected",
    ], results
    assert "already mapped from employee e1" in results[2]["message"]
    assert "not in the synced list" in results[3]["message"]
    assert "is not mapped from any job site" in results[7]["message"]
    assert "Procore Connect data mapping" in results[9]["message"]
    assert await ctx.mappings(P.EMPLOYEE) == {}
    payroll = await ctx.mappings(P.PAYROLL_TYPE)
    assert payroll[("pay-reg", 0)][0] == payroll[("pay-std", 0)][0] == reg

    changes = [json.loads(r.value) for r in await consume(ctx.cfg.kafka, ctx.cfg.topics.mapping_changes, 6)]
    named = [c for c in changes if c.get("entity") == "payroll_type"]
    assert named
    assert named[0]["procore_name"] == "Regular Time"

    # Pay IDs auto-map on the time type's abbreviation (read from a mapped project's list).
    await ctx.send(ctx.sync(P.PROJECT), ctx.map(P.PROJECT, "s-tower", tower))
    sync, auto = await ctx.send(ctx.sync(P.PAYROLL_TYPE), ctx.auto(P.PAYROLL_TYPE, overwrite=True))
    assert sync["status"] == "done"
    assert auto["details"]["field"] == "abbreviated_time_type"
    assert auto["details"]["mapped"] == 0
    assert auto["details"]["skipped"] == 2


async def test_two_way_accounts_refuse_manual_mapping_and_map_from_links(ctx: Ctx) -> None:
    tower = ctx.company["projects"][0]["id"]
    (two_way,) = await ctx.send(
        ConfigureSetup(
            account_id=ctx.account,
            procore_company_id=ctx.company["company_id"],
            enabled_modules=list(Module),
            two_way=True,
            requested_by="admin",
            permissions=ADMIN,
        )
    )
    assert two_way["status"] == "done"
    linked = ReferenceUpserted(
        account_id=ctx.account,
        kind=ReferenceKind.JOB_SITE,
        entity_id="s-linked",
        name="Linked",
        linked_procore_id=tower,
    )
    await produce(ctx.cfg.kafka, ctx.cfg.topics.reference, [linked], key=ctx.account.encode())
    manual, auto = await ctx.send(ctx.map(P.PROJECT, "s-other", tower), ctx.auto(P.PROJECT))
    assert manual["status"] == auto["status"] == "rejected"
    assert "two-way" in manual["message"]
    assert "linked" in manual["message"]

    async def mapped() -> dict[tuple[str, int], tuple[int, str, str | None]]:
        return await ctx.mappings(P.PROJECT)

    from tests.support.kafka import eventually

    found = await eventually(mapped, lambda m: ("s-linked", 0) in m, what="two-way mapping")
    assert found[("s-linked", 0)][:2] == (tower, "two_way")


async def test_setup_needs_the_admin_permission_in_the_service(ctx: Ctx) -> None:
    (refused,) = await ctx.send(
        ConfigureSetup(
            account_id=ctx.account,
            procore_company_id=ctx.company["company_id"],
            enabled_modules=[Module.MANPOWER],
            requested_by="mapper",
            permissions=["procore.mapping"],
        )
    )
    assert refused["status"] == "rejected"
    assert "Procore setup (administrator)" in refused["message"]
    (sync,) = await ctx.send(ctx.sync(P.VENDOR, permissions=["procore.setup"]))
    assert sync["status"] == "rejected"
    assert "Procore Connect data mapping" in sync["message"]


async def test_payroll_types_auto_map_before_and_after_a_project_is_mapped(ctx: Ctx) -> None:
    """Procore's company list of time types has only `id` and `time_type` (the sandbox answers as the spec says):
    synced before any project is mapped, auto-map compares the time type's name; once a project is mapped, the sync
    reads the abbreviations from its list and auto-map compares those with the pay IDs' Numbers."""
    types = {t["abbreviated_time_type"]: t["id"] for t in ctx.company["timecard_time_types"]}
    tower = ctx.company["projects"][0]["id"]
    await ctx.reference(ReferenceKind.PAY_ID, ("pay-reg", "Regular", "REG"), ("pay-ot", "Overtime", "OT"))

    async def pay_ids() -> list[Any]:
        sql = f'SELECT entity_id FROM "{ctx.cfg.schemas["mapping"]}".reference_entities WHERE account_id = $1'
        return await fetch(ctx.cfg.dsn, sql, ctx.account)

    await eventually(pay_ids, lambda rows: len(rows) == 2, what="the pay IDs")
    sync, auto = await ctx.send(ctx.sync(P.PAYROLL_TYPE), ctx.auto(P.PAYROLL_TYPE))
    assert sync["status"] == auto["status"] == "done", (sync, auto)
    assert auto["details"]["mapped"] == 1, auto
    assert await ctx.mappings(P.PAYROLL_TYPE) == {("pay-ot", 0): (types["OT"], "auto", None)}

    await ctx.send(ctx.sync(P.PROJECT), ctx.map(P.PROJECT, "s-tower", tower))
    sync, auto = await ctx.send(ctx.sync(P.PAYROLL_TYPE), ctx.auto(P.PAYROLL_TYPE))
    assert auto["details"]["mapped"] == 1, auto
    assert await ctx.mappings(P.PAYROLL_TYPE) == {
        ("pay-ot", 0): (types["OT"], "auto", None),
        ("pay-reg", 0): (types["REG"], "auto", None),
    }
