"""Force publish never happens by accident, against the whole back end: aggregator, publisher and mapping service
in process, the real broker, PostgreSQL and the Procore sandbox over HTTP.

A record we published is edited in Procore by someone else; the dashboard's force publish is refused without a
preview; the preview shows Procore's values, read from Procore at that moment, beside ours and flags the change; a
preview taken before the entries changed is refused; the confirmed force publish overwrites Procore.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.gateway.bootstrap import build_app as build_gateway
from shared.events import ConfigureSetup, Module, ProcoreEntity, SetMapping, TimelogUpserted
from tests.support.kafka import eventually, produce
from tests.support.mapping import auth, connect_service_account, gateway_settings, mapping_settings, serve_mapping
from tests.support.principals import TEST_BACKEND
from tests.support.publisher import Sandbox
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 24)
CELL = {"kind": "cell", "job_site_id": "site-1", "work_date": DAY.isoformat()}


def timelog(
    account: str, timelog_id: str, employee: str, crew: str, revision: int = 1, hours: int = 8
) -> TimelogUpserted:
    return TimelogUpserted(
        account_id=account,
        timelog_id=timelog_id,
        revision=revision,
        employee_id=employee,
        company_id="company-1",
        crew_tag=crew,
        job_site_id="site-1",
        work_date=DAY,
        duration_seconds=hours * 3600,
        pay_id="REG",
    )


@asynccontextmanager
async def dashboard(cfg: StackConfig, mapping_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = build_gateway(gateway_settings(cfg, mapping_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http,
    ):
        yield http


async def test_force_publish_shows_procores_current_values_and_needs_that_confirmation(
    kafka_bootstrap: str, postgres_dsn: str, procore_sandbox_url: str, unique: str, schemas: dict[str, str]
) -> None:
    sandbox = Sandbox(procore_sandbox_url)
    company = await sandbox.company("Preview Builders")
    account = f"acc-preview-{unique}"
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=procore_sandbox_url)
    topics = cfg.topics
    headers = auth(account)
    async with (
        running(cfg, which=("aggregator", "publisher")),
        serve_mapping(mapping_settings(cfg)) as mapping_url,
        dashboard(cfg, mapping_url) as http,
    ):
        connected = await connect_service_account(cfg, mapping_url, account, company.id)
        assert connected["status"] == "done", connected
        commands = [
            ConfigureSetup(
                account_id=account,
                procore_company_id=company.id,
                enabled_modules=[Module.MANPOWER],
                **TEST_BACKEND.requester(),
            ),
            SetMapping(
                account_id=account,
                entity=ProcoreEntity.PROJECT,
                mobiclocks_id="site-1",
                procore_id=company.project,
                **TEST_BACKEND.requester(),
            ),
            SetMapping(
                account_id=account,
                entity=ProcoreEntity.VENDOR,
                mobiclocks_id="company-1",
                procore_id=company.vendor,
                **TEST_BACKEND.requester(),
            ),
        ]
        await produce(kafka_bootstrap, topics.mapping_commands, list(commands), key=account.encode())
        await produce(
            kafka_bootstrap,
            topics.timelogs,
            [timelog(account, "t1", "e1", "Framers")],
            key=f"{account}:site-1".encode(),
        )
        cell_url = f"/api/modules/manpower/cells/site-1/{DAY.isoformat()}"

        async def rows() -> list[dict[str, Any]]:
            response = await http.get(cell_url, headers=headers)
            return list(response.json()["rows"]) if response.status_code == 200 else []

        await eventually(rows, lambda r: [x["status"] for x in r] == ["todo"], timeout_s=60, what="To do")
        published = await http.post(
            "/api/modules/manpower/publish", json={"action": "publish", "scope": CELL}, headers=headers
        )
        assert published.status_code == 202, published.text
        await eventually(rows, lambda r: r[0]["status"] == "published", timeout_s=60, what="Published")
        [record] = await sandbox.records(Module.MANPOWER, company)
        assert record["num_workers"] == 1

        # Someone edits the record in Procore.
        await sandbox.edit(Module.MANPOWER, record["id"], {"num_workers": 7, "num_hours": "6.5"})

        # 1. No force publish without the confirmation.
        blind = await http.post(
            "/api/modules/manpower/publish", json={"action": "force_publish", "scope": CELL}, headers=headers
        )
        assert blind.status_code == 409, blind.text
        assert "preview" in blind.json()["detail"], blind.text

        # 2. The preview reads Procore now: its values beside ours, flagged as changed there.
        preview = await http.post("/api/modules/manpower/force-publish/preview", json={"scope": CELL}, headers=headers)
        assert preview.status_code == 200, preview.text
        body = preview.json()
        [entry] = body["entries"]
        assert entry["changed_in_procore"] is True
        assert body["changed_in_procore"] == 1
        assert entry["effect"] == "overwrite"
        assert entry["ours"] == {"num_workers": "1", "num_hours": "8.00"}
        assert entry["procore"]["num_workers"] == "7"
        assert Decimal(entry["procore"]["num_hours"]) == Decimal("6.5")
        assert "Framers" in entry["label"]
        first_preview = body["preview_id"]

        # 3. The entries change after the preview (a second crew on that day): that preview no longer holds.
        await produce(
            kafka_bootstrap, topics.timelogs, [timelog(account, "t2", "e2", "Masons")], key=f"{account}:site-1".encode()
        )
        await eventually(rows, lambda r: len(r) == 2, timeout_s=60, what="a second crew")
        stale = await http.post(
            "/api/modules/manpower/publish",
            json={"action": "force_publish", "scope": CELL, "preview_id": first_preview},
            headers=headers,
        )
        assert stale.status_code == 409, stale.text
        assert "changed since" in stale.json()["detail"], stale.text
        forged = await http.post(
            "/api/modules/manpower/publish",
            json={"action": "force_publish", "scope": CELL, "preview_id": first_preview + "x"},
            headers=headers,
        )
        assert forged.status_code == 409

        # 4. Confirmed: a fresh preview covers both entries; the force publish overwrites Procore's edit.
        again = (
            await http.post("/api/modules/manpower/force-publish/preview", json={"scope": CELL}, headers=headers)
        ).json()
        assert sorted(e["effect"] for e in again["entries"]) == ["create", "overwrite"]

        # 3b. Same entries, new content (the Framers' timelog is edited to 6 h after that preview): the preview bound
        # what each entry was when shown, so the force publish is refused, in words that say to review again.
        edited = timelog(account, "t1", "e1", "Framers", revision=2, hours=6)
        await produce(kafka_bootstrap, topics.timelogs, [edited], key=f"{account}:site-1".encode())

        async def framers_hours() -> str | None:
            for e in (
                await http.post("/api/modules/manpower/force-publish/preview", json={"scope": CELL}, headers=headers)
            ).json()["entries"]:
                if "Framers" in e["label"]:
                    return str(e["ours"]["num_hours"])
            return None

        await eventually(framers_hours, lambda h: h == "6.00", timeout_s=60, what="the edited timelog")
        unseen = await http.post(
            "/api/modules/manpower/publish",
            json={"action": "force_publish", "scope": CELL, "preview_id": again["preview_id"]},
            headers=headers,
        )
        assert unseen.status_code == 409, unseen.text
        assert unseen.json()["detail"] == "These entries changed since you reviewed them — review again", unseen.text
        again = (
            await http.post("/api/modules/manpower/force-publish/preview", json={"scope": CELL}, headers=headers)
        ).json()
        forced = await http.post(
            "/api/modules/manpower/publish",
            json={"action": "force_publish", "scope": CELL, "preview_id": again["preview_id"]},
            headers=headers,
        )
        assert forced.status_code == 202, forced.text
        await eventually(
            rows, lambda r: [x["status"] for x in r] == ["published", "published"], timeout_s=60, what="forced"
        )
        overwritten = {r["id"]: r for r in await sandbox.records(Module.MANPOWER, company)}
        assert overwritten[record["id"]]["num_workers"] == 1, overwritten
        after = (
            await http.post("/api/modules/manpower/force-publish/preview", json={"scope": CELL}, headers=headers)
        ).json()
        assert [e["changed_in_procore"] for e in after["entries"]] == [False, False]

        # 5. Deleted in Procore: Procore has nothing to show, the change is flagged, the record would be re-created.
        await sandbox.delete(Module.MANPOWER, record["id"])
        gone = (
            await http.post("/api/modules/manpower/force-publish/preview", json={"scope": CELL}, headers=headers)
        ).json()
        deleted = [e for e in gone["entries"] if e["procore"] is None]
        assert [(e["effect"], e["changed_in_procore"]) for e in deleted] == [("recreate", True)], gone
    await sandbox.aclose()
