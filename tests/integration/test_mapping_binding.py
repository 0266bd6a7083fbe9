"""A Procore company belongs to the account that proved it controls it: bound once (the database decides),
unbound explicitly, and every Procore call and token is for a company bound to the account.

The scenario of issue 9 runs end to end: a second account ("intruder", with every permission) is never offered
the demo account's company, its setup to it is refused with a clear message, and nothing of that company is
synced or published for it. Real broker, real PostgreSQL, the sandbox over HTTP; the gateway in-process (one
cookie jar per browser), the mapping service under uvicorn, the aggregator and the publisher in-process (the
publisher takes each account's tokens from the mapping service).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest

from services.gateway.bootstrap import build_app as build_gateway
from services.mapping.proof import ALREADY_BOUND
from services.publisher.bootstrap import build_app as build_publisher
from services.publisher.config import PublisherSettings
from shared.broker import ensure_topics
from shared.events import (
    ConfigureSetup,
    Module,
    ProcoreEntity,
    ReferenceKind,
    ReferenceUpserted,
    SyncProcoreEntities,
    TimelogUpserted,
)
from tests.sandbox_fixtures import run_sandbox
from tests.support.kafka import eventually, produce
from tests.support.mapping import (
    INTERNAL_TOKEN,
    auth,
    changes_on_topic,
    fetch,
    gateway_settings,
    internal,
    mapping_settings,
    oauth_round_trip,
    outcome,
    sandbox_user,
    serve_mapping,
    service_account,
)
from tests.support.principals import TEST_BACKEND
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 18)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


@dataclass
class World:
    cfg: StackConfig
    mapping_url: str
    gateway: Any
    demo_company: dict[str, Any]
    intruder_company: dict[str, Any]
    pat: str
    """A Procore user of the demo company only."""
    ivan: str
    """A Procore user of the intruder's company only."""
    carol: str
    """A Procore user of both companies (a consultant)."""

    def browser(self) -> httpx.AsyncClient:
        """A browser of its own (its own cookies) on the in-process gateway."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.gateway), base_url="http://gateway")

    @property
    def schema(self) -> str:
        return self.cfg.schemas["mapping"]

    async def done(self, command_id: str) -> dict[str, Any]:
        return await outcome(self.cfg.dsn, self.schema, command_id, timeout_s=60)

    async def bindings(self) -> dict[int, str]:
        rows = await fetch(self.cfg.dsn, f'SELECT procore_company_id, account_id FROM "{self.schema}".company_bindings')
        return {r["procore_company_id"]: r["account_id"] for r in rows}

    async def requests_for(self, company_id: int, since: int) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.cfg.procore_url) as control:
            log = (await control.get("/_sandbox/requests", params={"since": since})).json()
        return [r for r in log if r["company_id"] == company_id or str(company_id) in r["path"] + r["query"]]

    async def last_request(self) -> int:
        async with httpx.AsyncClient(base_url=self.cfg.procore_url) as control:
            log = (await control.get("/_sandbox/requests")).json()
        return int(log[-1]["seq"]) if log else 0


@pytest.fixture
async def world(
    sandbox: str, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> AsyncIterator[World]:
    async with httpx.AsyncClient(base_url=sandbox) as control:
        demo = (
            await control.post(
                "/_sandbox/companies",
                json={
                    "name": f"Demo Builders {unique}",
                    "projects": [{"name": "Tower A", "project_number": "P-100"}],
                    "vendors": [{"name": "Demo Vendor"}],
                },
            )
        ).json()
        mine = (
            await control.post(
                "/_sandbox/companies",
                json={"name": f"Intruder Co {unique}", "projects": [{"name": "Shed"}], "vendors": [{"name": "Own"}]},
            )
        ).json()
    pat, ivan, carol = (f"{who}-{unique}@procore.example" for who in ("pat", "ivan", "carol"))
    await sandbox_user(sandbox, pat, [demo["company_id"]])
    await sandbox_user(sandbox, ivan, [mine["company_id"]])
    await sandbox_user(sandbox, carol, [demo["company_id"], mine["company_id"]])
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    async with serve_mapping(mapping_settings(cfg)) as mapping_url:
        gateway = build_gateway(gateway_settings(cfg, mapping_url))
        async with gateway.router.lifespan_context(gateway):
            yield World(cfg, mapping_url, gateway, demo, mine, pat, ivan, carol)


async def test_an_intruder_is_never_offered_another_accounts_company_and_cannot_set_it_up(
    world: World, kafka_bootstrap: str
) -> None:
    demo_company, intruder_company = world.demo_company["company_id"], world.intruder_company["company_id"]
    publisher = build_publisher(
        PublisherSettings(
            **world.cfg.common("publisher"),
            **world.cfg.procore(),
            procore_tokens_url=world.mapping_url,
            internal_api_token=INTERNAL_TOKEN,
        )
    )
    async with running(world.cfg, ("aggregator",)), publisher.start_lifespan_context(), world.browser() as demo:
        # The demo account: its Procore user consents; the company is bound to it and chosen.
        connected = await oauth_round_trip(demo, auth("demo"), world.pat)
        assert (await world.done(connected.command_id))["status"] == "done"
        assert await world.bindings() == {demo_company: "demo"}
        setup = await demo.put(
            "/api/setup",
            json={"procore_company_id": demo_company, "enabled_modules": ["manpower"]},
            headers=auth("demo"),
        )
        assert (await world.done(setup.json()["command_id"]))["status"] == "done"
        since = await world.last_request()

        async with world.browser() as intruder:
            them = auth("intruder")  # every permission, as any customer's admin has
            # The app's own client credentials (the old "service account" option): refused, they prove nothing.
            app_own = await intruder.post(
                "/api/procore/connection",
                json={"grant": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret"},
                headers=them,
            )
            assert app_own.status_code == 422
            assert "prove nothing" in app_own.json()["detail"]
            # Its own service account: its own company only.
            client_id, secret = await service_account(world.cfg.procore_url, intruder_company)
            own = await intruder.post(
                "/api/procore/connection",
                json={"grant": "client_credentials", "client_id": client_id, "client_secret": secret},
                headers=them,
            )
            assert (await world.done(own.json()["command_id"]))["status"] == "done"
            # A Procore user who can act for both companies consents: the demo company is not offered.
            both = await oauth_round_trip(intruder, them, world.carol)
            both_done = await world.done(both.command_id)
            assert both_done["status"] == "done"
            assert (
                "1 Procore company it reaches is already connected to another MobiClocks account"
                in both_done["message"]
            )
            assert str(world.demo_company["company_id"]) not in str(both_done)

            offered = (await intruder.get("/api/procore/connection", headers=them)).json()
            assert [c["procore_company_id"] for c in offered["companies"]] == [intruder_company]
            assert offered["procore_company_id"] == intruder_company

            # Its setup to the demo company: refused with a clear message, through the gateway and behind it.
            refused = await intruder.put(
                "/api/setup",
                json={"procore_company_id": demo_company, "enabled_modules": ["manpower"]},
                headers=them,
            )
            assert refused.status_code == 202
            assert await world.done(refused.json()["command_id"]) == {
                "status": "rejected",
                "message": ALREADY_BOUND,
                "details": None,
            }
            shown = (await intruder.get(f"/api/commands/{refused.json()['command_id']}", headers=them)).json()
            assert (shown["status"], shown["message"]) == ("rejected", ALREADY_BOUND)
            backend = ConfigureSetup(
                account_id="intruder",
                procore_company_id=demo_company,
                enabled_modules=list(Module),
                **TEST_BACKEND.requester(),
            )
            await produce(kafka_bootstrap, world.cfg.topics.mapping_commands, [backend], key=b"intruder")
            assert (await world.done(str(backend.event_id)))["message"] == ALREADY_BOUND

            # Sync and publish as the intruder: its own company only.
            own_setup = await intruder.put(
                "/api/setup",
                json={"procore_company_id": intruder_company, "enabled_modules": ["manpower"]},
                headers=them,
            )
            assert (await world.done(own_setup.json()["command_id"]))["status"] == "done"
            sync = await intruder.post("/api/mapping/vendor/sync", headers=them)
            assert (await world.done(sync.json()["command_id"]))["status"] == "done"
            await produce(
                kafka_bootstrap,
                world.cfg.topics.reference,
                [ReferenceUpserted(account_id="intruder", kind=ReferenceKind.JOB_SITE, entity_id="s1", name="S1")],
                key=b"intruder",
            )
            # Mapped (before any project sync, ids are trusted) to the demo company's project: still published
            # to the intruder's own company only, where Procore does not know that project.
            mapped = await intruder.put(
                "/api/mappings/project/s1", json={"procore_id": world.demo_company["projects"][0]["id"]}, headers=them
            )
            assert (await world.done(mapped.json()["command_id"]))["status"] == "done"
            vendor = await intruder.put(
                "/api/mappings/vendor/c1", json={"procore_id": world.intruder_company["vendors"][0]}, headers=them
            )
            assert (await world.done(vendor.json()["command_id"]))["status"] == "done"
            await produce(
                kafka_bootstrap,
                world.cfg.topics.timelogs,
                [
                    TimelogUpserted(
                        account_id="intruder",
                        timelog_id="t1",
                        revision=1,
                        employee_id="e1",
                        company_id="c1",
                        job_site_id="s1",
                        work_date=DAY,
                        duration_seconds=8 * 3600,
                        pay_id="REG",
                    )
                ],
                key=b"intruder:s1",
            )
            await produce(
                kafka_bootstrap,
                world.cfg.topics.reference,
                [ReferenceUpserted(account_id="intruder", kind=ReferenceKind.COMPANY, entity_id="c1", name="C1")],
                key=b"intruder",
            )

            async def cell() -> list[dict[str, Any]]:
                response = await intruder.get(f"/api/modules/manpower/cells/s1/{DAY}", headers=them)
                return list(response.json()["rows"]) if response.status_code == 200 else []

            await eventually(
                cell, lambda rows: len(rows) == 1 and rows[0]["status"] == "todo", timeout_s=30, what="To do"
            )
            await intruder.post(
                "/api/modules/manpower/publish",
                json={"action": "publish", "scope": {"kind": "cell", "job_site_id": "s1", "work_date": str(DAY)}},
                headers=them,
            )
            failed = await eventually(
                cell, lambda rows: rows[0]["status"] not in ("todo", "publishing"), timeout_s=30, what="an outcome"
            )
            assert failed[0]["status"] == "failed", failed  # Procore: no such project in the intruder's company

    # The company stays the demo account's; nothing of it was read or written for the intruder.
    assert await world.bindings() == {demo_company: "demo", intruder_company: "intruder"}
    assert await world.requests_for(demo_company, since) == []
    async with httpx.AsyncClient(base_url=world.cfg.procore_url) as control:
        written = (await control.get("/_sandbox/records/manpower_logs", params={"company_id": demo_company})).json()
    assert written == []
    synced = await fetch(
        world.cfg.dsn, f'SELECT name FROM "{world.schema}".procore_entities WHERE account_id = $1', "intruder"
    )
    assert [r["name"] for r in synced] == ["Own"]
    setups = [c for c in await changes_on_topic(world.cfg, "intruder") if c["type"] == "setup.changed"]
    assert setups
    assert {c["procore_company_id"] for c in setups} == {intruder_company}


async def test_a_company_is_bound_once_by_the_database(world: World) -> None:
    conn = await asyncpg.connect(world.cfg.dsn, server_settings={"search_path": world.schema})
    try:
        insert = (
            "INSERT INTO company_bindings (procore_company_id, account_id, name, proof)"
            " VALUES ($1, $2, 'Co', 'user_consent')"
        )
        await conn.execute(insert, 77, "acc-one")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, 77, "acc-two")
        # A setup names only a company bound to the same account.
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO setups (account_id, procore_company_id) VALUES ('acc-two', 77)")
        await conn.execute("INSERT INTO setups (account_id, procore_company_id) VALUES ('acc-one', 77)")
        # ... and its binding cannot go while the setup names it.
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("DELETE FROM company_bindings WHERE procore_company_id = 77")
    finally:
        await conn.close()


async def test_unbound_explicitly_then_bound_by_another_account(world: World) -> None:
    company = world.demo_company["company_id"]
    async with world.browser() as first, world.browser() as second:
        assert (await world.done((await oauth_round_trip(first, auth("acc-1"), world.pat)).command_id))[
            "status"
        ] == "done"
        taken = await world.done((await oauth_round_trip(second, auth("acc-2"), world.pat)).command_id)
        assert "already connected to another MobiClocks account" in taken["message"]
        assert (await second.get("/api/procore/connection", headers=auth("acc-2"))).json()["companies"] == []

        # Disconnecting does not release the company; unbinding does (and clears Setup's choice of it).
        disconnect = await first.delete("/api/procore/connection", headers=auth("acc-1"))
        assert (await world.done(disconnect.json()["command_id"]))["status"] == "done"
        assert (await world.bindings()).get(company) == "acc-1"
        other = await second.delete(f"/api/procore/companies/{company}", headers=auth("acc-2"))
        assert (await world.done(other.json()["command_id"]))["status"] == "rejected", "not acc-2's to release"
        unbind = await first.delete(f"/api/procore/companies/{company}", headers=auth("acc-1"))
        released = await world.done(unbind.json()["command_id"])
        assert released["status"] == "done"
        assert "no longer connected" in released["message"]
        assert company not in await world.bindings()
        view = (await first.get("/api/procore/connection", headers=auth("acc-1"))).json()
        assert view["companies"] == []
        assert view["procore_company_id"] is None

        again = await world.done((await oauth_round_trip(second, auth("acc-2"), world.pat)).command_id)
        assert again["status"] == "done"
        assert "already connected" not in again["message"]
        assert (await world.bindings())[company] == "acc-2"
        changes = [c for c in await changes_on_topic(world.cfg, "acc-1") if c["type"] == "setup.changed"]
        assert changes[-1]["procore_company_id"] is None


async def test_the_mapping_service_refuses_procore_calls_for_a_company_not_bound_to_the_account(
    world: World, kafka_bootstrap: str
) -> None:
    demo_company = world.demo_company["company_id"]
    async with world.browser() as browser:
        connected = await oauth_round_trip(browser, auth("acc-owner"), world.pat)
        assert (await world.done(connected.command_id))["status"] == "done"
        other = await oauth_round_trip(browser, auth("acc-other"), world.ivan)
        assert (await world.done(other.command_id))["status"] == "done"
    # A setup written around every check (as if by a bug, or before bindings existed) naming another's company.
    conn = await asyncpg.connect(world.cfg.dsn, server_settings={"search_path": world.schema})
    try:
        await conn.execute("SET session_replication_role = replica")  # skips the foreign key, as old data would
        await conn.execute(
            "UPDATE setups SET procore_company_id = $1, enabled_modules = '{manpower}' WHERE account_id = 'acc-other'",
            demo_company,
        )
    finally:
        await conn.close()
    since = await world.last_request()
    sync = SyncProcoreEntities(account_id="acc-other", entity=ProcoreEntity.VENDOR, **TEST_BACKEND.requester())
    await produce(kafka_bootstrap, world.cfg.topics.mapping_commands, [sync], key=b"acc-other")
    refused = await world.done(str(sync.event_id))
    assert refused["status"] == "rejected"
    assert f"Procore company {demo_company} is not bound" in refused["message"]
    assert await world.requests_for(demo_company, since) == [], "no call reached Procore"

    # The token endpoint: the bound company gets the token; another company, named or chosen, is refused.
    ok = await internal(
        world.mapping_url, "/procore-token", {"account_id": "acc-owner", "procore_company_id": demo_company}
    )
    assert ok.status_code == 200
    assert ok.json()["procore_company_id"] == demo_company
    for body in (
        {"account_id": "acc-other", "procore_company_id": demo_company},
        {"account_id": "acc-other"},  # Setup's (broken) choice
        {"account_id": "acc-owner", "procore_company_id": world.intruder_company["company_id"]},
        {"account_id": "acc-owner", "procore_company_id": 424242},
    ):
        answer = await internal(world.mapping_url, "/procore-token", body)
        assert answer.status_code == 403, (body, answer.text)
        assert answer.json()["error"] == "company_not_bound"
        assert "is not bound to account" in answer.json()["message"]
        assert "access_token" not in answer.json()
