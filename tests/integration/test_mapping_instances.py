"""Two mapping instances in one consumer group give the result of one: token refreshes, syncs and auto-maps.

Real broker, real PostgreSQL, the sandbox over real HTTP; both instances under uvicorn in this process,
same settings (same schema, same consumer group), each with its own span recorder so the test can see
that both really worked. Commands for one account are spread over every partition on purpose, so both
instances handle the same account's syncs at once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
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
from tests.support.kafka import produce
from tests.support.mapping import (
    INTERNAL_TOKEN,
    Instance,
    connect_user,
    fetch,
    mapping_instance,
    outcome,
    partitions_of,
    produce_to_partitions,
    sandbox_user,
    sent_changes,
)
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration

ADMIN = ["procore.setup", "procore.mapping"]
COMPANY = {
    "name": "Two Instances Builders",
    "projects": [{"name": f"Project {i}", "project_number": f"P-{i}"} for i in range(1, 7)],
}


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
class Two:
    cfg: StackConfig
    sandbox: Sandbox
    account: str
    company: dict[str, Any]
    instances: list[Instance]

    @property
    def schema(self) -> str:
        return self.cfg.schemas["mapping"]

    async def send(self, *commands: Command) -> list[dict[str, Any]]:
        """Commands in order on the account's own partition; waits for each outcome."""
        await produce(self.cfg.kafka, self.cfg.topics.mapping_commands, list(commands), key=self.account.encode())
        return [await outcome(self.cfg.dsn, self.schema, c.event_id) for c in commands]

    async def spread(self, commands: list[list[Command]]) -> list[dict[str, Any]]:
        """Each list of commands on its own partition (in order there); waits for every outcome."""
        partitions = await partitions_of(self.cfg.kafka, self.cfg.topics.mapping_commands)
        placed = [(partitions[i % len(partitions)], c) for i, group in enumerate(commands) for c in group]
        await produce_to_partitions(self.cfg.kafka, self.cfg.topics.mapping_commands, placed)
        return [await outcome(self.cfg.dsn, self.schema, c.event_id) for _, c in placed]

    async def balanced(self, timeout_s: float = 60.0) -> None:
        """Until every instance has consumed commands (the group has given each some partitions)."""
        topic = self.cfg.topics.mapping_commands
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not all(i.consumed(topic) for i in self.instances):
            assert asyncio.get_running_loop().time() < deadline, "the instances never shared the partitions"
            # Refused at once (no permission) and changes nothing: a harmless probe of who consumes what.
            probes = [
                SetMapping(
                    account_id=self.account,
                    entity=ProcoreEntity.VENDOR,
                    mobiclocks_id="probe",
                    procore_id=None,
                    requested_by="probe",
                    permissions=[],
                )
                for _ in range(4)
            ]
            await self.spread([[p] for p in probes])

    async def token(self, instance: Instance, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(
                f"{instance.internal}/internal/procore-token",
                json=body,
                headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
            )

    async def connection(self) -> dict[str, Any]:
        rows = await fetch(
            self.cfg.dsn, f'SELECT * FROM "{self.schema}".connections WHERE account_id = $1', self.account
        )
        return dict(rows[0].items())

    async def token_grants(self) -> int:
        async with httpx.AsyncClient(base_url=self.sandbox.url) as control:
            log = (await control.get("/_sandbox/requests", params={"path": "/oauth/token", "method": "POST"})).json()
        return len(log)

    def sync(self, entity: ProcoreEntity) -> SyncProcoreEntities:
        return SyncProcoreEntities(account_id=self.account, entity=entity, requested_by="mapper", permissions=ADMIN)

    def auto(self, entity: ProcoreEntity) -> AutoMap:
        return AutoMap(account_id=self.account, entity=entity, requested_by="mapper", permissions=ADMIN)


@pytest.fixture
async def two(
    sandbox: Sandbox, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> AsyncIterator[Two]:
    async with httpx.AsyncClient(base_url=sandbox.url) as control:
        company = (await control.post("/_sandbox/companies", json=COMPANY)).json()
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox.url)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    async with AsyncExitStack() as stack:
        instances = [await stack.enter_async_context(mapping_instance(cfg)) for _ in range(2)]
        two = Two(cfg, sandbox, f"acc-{unique}", company, instances)
        setup = ConfigureSetup(
            account_id=two.account,
            procore_company_id=company["company_id"],
            enabled_modules=list(Module),
            requested_by="admin",
            permissions=ADMIN,
        )
        login = f"pat-{unique}@instances.example"
        await sandbox_user(sandbox.url, login, [company["company_id"]])
        assert (await connect_user(cfg, instances[0].internal, two.account, login))["status"] == "done"
        assert [o["status"] for o in await two.send(setup)] == ["done"]
        yield two


async def test_concurrent_token_requests_to_both_instances_refresh_once(two: Two, sandbox: Sandbox) -> None:
    before = await two.connection()
    # The stored token is about to expire: every caller must get a refreshed one.
    await fetch(
        two.cfg.dsn, f'UPDATE "{two.schema}".connections SET expires_at = now() WHERE account_id = $1', two.account
    )
    grants = await two.token_grants()
    callers = itertools.islice(itertools.cycle(two.instances), 12)
    answers = await asyncio.gather(*(two.token(i, {"account_id": two.account}) for i in callers))

    assert [a.status_code for a in answers] == [200] * 12, [a.text for a in answers]
    tokens = {a.json()["access_token"] for a in answers}
    assert len(tokens) == 1, "every caller gets the one refreshed token"
    assert await two.token_grants() == grants + 1, "exactly one refresh reached Procore"
    after = await two.connection()
    assert after["status"] == "connected"
    assert after["refresh_count"] == before["refresh_count"] + 1
    async with httpx.AsyncClient(base_url=sandbox.url) as procore:
        (token,) = tokens
        listed = await procore.get("/rest/v1.0/companies", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200

        # Procore rejects that token (401) and every caller says so at once, to both instances: one refresh.
        grants = await two.token_grants()
        rejected = {"account_id": two.account, "force_refresh": True, "rejected_token": token}
        callers = itertools.islice(itertools.cycle(two.instances), 12)
        again = await asyncio.gather(*(two.token(i, rejected) for i in callers))
        assert [a.status_code for a in again] == [200] * 12, [a.text for a in again]
        renewed = {a.json()["access_token"] for a in again}
        assert len(renewed) == 1
        assert token not in renewed
        assert await two.token_grants() == grants + 1
        (new_token,) = renewed
        listed = await procore.get("/rest/v1.0/companies", headers={"Authorization": f"Bearer {new_token}"})
        assert listed.status_code == 200
    assert (await two.connection())["status"] == "connected"


async def test_concurrent_syncs_and_auto_maps_through_both_instances_equal_one(two: Two, sandbox: Sandbox) -> None:
    projects = {f"P-{p['name'].split()[-1]}": p["id"] for p in two.company["projects"]}  # "Project 3" is P-3
    sites = [
        ReferenceUpserted(
            account_id=two.account, kind=ReferenceKind.JOB_SITE, entity_id=f"site-{n}", name=f"Site {n}", number=n
        )
        for n in projects
    ]
    await produce(two.cfg.kafka, two.cfg.topics.reference, list(sites), key=two.account.encode())
    await two.balanced()
    at_start = {id(i): len(i.consumed(two.cfg.topics.mapping_commands)) for i in two.instances}

    # Every partition syncs and then auto-maps the projects tab: both instances, same account, same tab.
    outcomes = await two.spread([[two.sync(ProcoreEntity.PROJECT), two.auto(ProcoreEntity.PROJECT)] for _ in range(8)])
    assert all(o["status"] == "done" for o in outcomes), outcomes
    worked = [len(i.consumed(two.cfg.topics.mapping_commands)) - at_start[id(i)] for i in two.instances]
    assert all(worked), f"both instances handled some of the commands: {worked}"

    mapped = await fetch(
        two.cfg.dsn,
        f'SELECT mobiclocks_id, procore_id, source FROM "{two.schema}".mappings'
        " WHERE account_id = $1 AND entity = 'project'",
        two.account,
    )
    assert {(r["mobiclocks_id"], r["procore_id"], r["source"]) for r in mapped} == {
        (f"site-{n}", pid, "auto") for n, pid in projects.items()
    }
    autos = [o["details"] for o in outcomes if "field" in (o["details"] or {})]
    assert sum(a["mapped"] for a in autos) == len(projects), "each job site was mapped by one auto-map only"
    syncs = [o["details"] for o in outcomes if "field" not in (o["details"] or {})]
    assert sum(s["added"] for s in syncs) == len(projects), "each project was new to one sync only"
    changes = [c for c in await sent_changes(two.cfg, two.account) if c["type"] == "mapping.changed"]
    assert sorted((c["mobiclocks_id"], c["procore_id"]) for c in changes) == sorted(
        (f"site-{n}", pid) for n, pid in projects.items()
    ), "one change per mapping, as one auto-map sends"

    # Procore changes under us: one project renamed, one deleted. Eight concurrent syncs see it once.
    company = sandbox.state.companies[two.company["company_id"]]
    company.projects[projects["P-1"]].name = "Project One (renamed)"
    del company.projects[projects["P-2"]]
    outcomes = await two.spread([[two.sync(ProcoreEntity.PROJECT)] for _ in range(8)])
    assert all(o["status"] == "done" for o in outcomes), outcomes
    assert sum(o["details"]["renamed"] for o in outcomes) == 1
    assert sum(o["details"]["gone"] for o in outcomes) == 1
    assert sum(o["details"]["broken"] for o in outcomes) == 1
    after = [c for c in await sent_changes(two.cfg, two.account) if c["type"] == "mapping.changed"][len(changes) :]
    assert sorted((c["mobiclocks_id"], c["procore_id"], c["procore_name"], c["broken_reason"]) for c in after) == [
        ("site-P-1", projects["P-1"], "Project One (renamed)", None),
        ("site-P-2", None, None, "Procore project Project 2 no longer exists in Procore"),
    ], "the rename and the breakage were each sent once, as one sync sends them"
