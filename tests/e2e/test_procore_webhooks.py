"""Procore webhooks end to end, as `make run` runs the system: the mapping service registers a hook for the chosen
company, a person edits the published manpower log in Procore (the sandbox), Procore delivers the event to the
gateway, and the entry shows "changed in Procore" within 2 s — without anyone publishing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from shared.labels import CHANGED_IN_PROCORE, DELETED_IN_PROCORE
from tests.support.account import ReadyAccount, manpower_ready_account
from tests.support.kafka import eventually
from tests.support.office import cell_rows, publish_cell, send_timelogs, timelog
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e
DAY = date(2026, 11, 18)
TRIGGERS = 9  # 3 resources x create/update/delete


async def _triggers_created(sandbox: httpx.AsyncClient, company_id: int) -> list[dict[str, Any]]:
    log = (await sandbox.get("/_sandbox/requests", params={"path": "/triggers", "method": "POST"})).json()
    return [r for r in log if r["company_id"] == company_id and r["status"] == 201]


async def _ready_account(
    gw: httpx.AsyncClient, sandbox_url: str, system: System, kafka_bootstrap: str, account: str, company: str
) -> ReadyAccount:
    return await manpower_ready_account(
        gw,
        sandbox_url,
        kafka_bootstrap,
        system.topics,
        account=account,
        user="u",
        company=company,
        site=("site-1", "Tower A"),
        vendor="co-1",
        timeout_s=30,
    )


async def _published(
    gw: httpx.AsyncClient, system: System, kafka_bootstrap: str, account: str, ready: ReadyAccount, timelogs: int
) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """The crew's timelogs (8 h each, one person each) make one manpower entry at site-1, published; reads its
    cell's rows."""
    logs = [timelog(account, f"tl-{i}", f"emp-{i}", "site-1", DAY, crew_tag="Pour") for i in range(1, timelogs + 1)]
    await send_timelogs(kafka_bootstrap, system.topics, logs)
    rows = cell_rows(gw, ready.auth, "manpower", "site-1", DAY)
    await eventually(rows, lambda r: len(r) == 1 and r[0]["status"] == "todo", timeout_s=30, what="To do")
    published = await publish_cell(gw, ready.auth, "manpower", "site-1", DAY)
    assert published.status_code == 202, published.text
    await eventually(rows, lambda r: r[0]["status"] == "published", timeout_s=30, what="Published")
    return rows


async def test_an_edit_in_procore_shows_as_a_conflict_within_two_seconds_without_a_publish(
    system: System, kafka_bootstrap: str
) -> None:
    base, sandbox_url = system.ready()
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as gw,
        httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox,
    ):
        ready = await _ready_account(gw, sandbox_url, system, kafka_bootstrap, "hooks-account", "Hooks")
        company_id = ready.company["company_id"]
        # The hook and its 9 triggers are registered for the chosen company (Setup's choice wakes the keeper).
        await eventually(
            lambda: _triggers_created(sandbox, company_id), lambda t: len(t) >= TRIGGERS, timeout_s=30, what="hook"
        )
        rows = await _published(gw, system, kafka_bootstrap, "hooks-account", ready, timelogs=2)
        scope = {"kind": "cell", "job_site_id": "site-1", "work_date": str(DAY)}
        (log,) = (await sandbox.get("/_sandbox/records/manpower_logs", params={"company_id": company_id})).json()
        # Our own create was delivered too, and changed nothing: the entry stays Published.
        deliveries = await eventually(
            lambda: sandbox.get("/_sandbox/webhook-deliveries"),
            lambda r: any(d["event"]["resource_id"] == log["id"] and d["status"] == "delivered" for d in r.json()),
            timeout_s=10,
            what="our create delivered",
        )
        assert {d["event"]["event_type"] for d in deliveries.json()} == {"create"}
        assert (await rows())[0]["status"] == "published"

        # A person edits the log in Procore.
        edited = await sandbox.patch(f"/_sandbox/records/manpower_logs/{log['id']}", json={"num_workers": 5})
        assert edited.status_code == 200, edited.text
        started = time.monotonic()
        (row,) = await eventually(rows, lambda r: r[0]["status"] == "failed", timeout_s=2, what="changed in Procore")
        took = time.monotonic() - started
        print(f"\nedit in Procore → entry Failed 'changed in Procore': {took * 1000:.0f} ms (100 ms polling)")
        assert row["conflict"] is True, row
        assert row["last_error"] == CHANGED_IN_PROCORE, row
        assert took < 2.0
        setup = (await gw.get("/api/procore/connection", headers=ready.auth)).json()
        assert setup["webhooks"]["registered_at"], setup
        assert setup["webhooks"]["last_delivery_at"], setup
        detail = (await gw.get(f"/api/entries/{row['entry_id']}", headers=ready.auth)).json()
        assert detail["history"][-1]["action"] == "procore"
        assert detail["history"][-1]["outcome"] == "conflict"

        # A delivery without the hook's secret is refused.
        deliveries = (await sandbox.get("/_sandbox/webhook-deliveries")).json()
        (update,) = [d for d in deliveries if d["event"]["event_type"] == "update"]
        forged = await gw.post("/webhooks/procore", json=update["event"], headers={"Authorization": "Bearer forged"})
        assert forged.status_code == 401
        # Procore delivers again (a retry, a duplicate): taken once, by the event's id.
        (hook,) = (
            await sandbox.get("/_sandbox/requests", params={"path": "/webhooks/hooks", "method": "POST"})
        ).json()[:1]
        secret = {"Authorization": hook["body"]["hook"]["destination_headers"]["Authorization"]}
        repeated = await gw.post("/webhooks/procore", json=update["event"], headers=secret)
        assert repeated.status_code == 200, repeated.text
        assert repeated.json() == {"outcome": "duplicate"}, repeated.text
        too_large = await gw.post("/webhooks/procore", content=b"{" + b" " * 70_000 + b"}", headers=secret)
        assert too_large.status_code == 413

        # Deleted in Procore: the entry says so (it was Failed already; a delete of a Published one is flagged).
        force = await gw.post("/api/modules/manpower/force-publish/preview", json={"scope": scope}, headers=ready.auth)
        assert force.status_code == 200, force.text
        again = await gw.post(
            "/api/modules/manpower/publish",
            json={"action": "force_publish", "scope": scope, "preview_id": force.json()["preview_id"]},
            headers=ready.auth,
        )
        assert again.status_code == 202, again.text
        await eventually(rows, lambda r: r[0]["status"] == "published", timeout_s=30, what="Published again")
        # our force publish's own update delivery changes nothing
        await eventually(
            lambda: sandbox.get("/_sandbox/webhook-deliveries"),
            lambda r: sum(d["event"]["event_type"] == "update" and d["status"] == "delivered" for d in r.json()) == 2,
            timeout_s=10,
            what="our update delivered",
        )
        assert (await rows())[0]["status"] == "published"
        deleted = await sandbox.delete(f"/_sandbox/records/manpower_logs/{log['id']}")
        assert deleted.status_code == 200, deleted.text
        (row,) = await eventually(rows, lambda r: r[0]["status"] == "failed", timeout_s=2, what="deleted in Procore")
        assert row["last_error"] == DELETED_IN_PROCORE, row


@pytest.fixture
def system_reconciling(kafka_bootstrap: str, postgres_dsn: str, unique: str) -> Iterator[System]:
    extra = {"WEBHOOK_KEEPER_INTERVAL_S": "0.5", "WEBHOOK_RECONCILE_INTERVAL_S": "1"}
    with running_system(kafka_bootstrap, postgres_dsn, unique, extra_env=extra) as running:
        yield running


@pytest.mark.parametrize("what", ["edit", "delete"])
async def test_the_reconcile_catches_an_edit_or_a_deletion_whose_delivery_was_lost(
    system_reconciling: System, kafka_bootstrap: str, what: str
) -> None:
    """Deliveries switched off: the hourly reconcile still turns the entry into a conflict — an edit by the log's
    `updated_at`, a deletion by the log missing from Procore's list where an earlier reconcile saw it."""
    system = system_reconciling
    base, sandbox_url = system.ready()
    account = f"reconcile-{what}"
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as gw,
        httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox,
    ):
        ready = await _ready_account(gw, sandbox_url, system, kafka_bootstrap, account, "Lost")
        company_id = ready.company["company_id"]
        rules = await sandbox.put(f"/_sandbox/companies/{company_id}/rules", json={"webhooks_off": True})
        assert rules.status_code == 200, rules.text
        assert rules.json()["webhooks_off"] is True, rules.text
        rows = await _published(gw, system, kafka_bootstrap, account, ready, timelogs=1)
        # Several reconciles see our own create: it is not newer than our publish, so the entry stays Published.
        await eventually(
            lambda: sandbox.get("/_sandbox/requests", params={"path": "/manpower_logs", "method": "GET"}),
            lambda r: len(r.json()) >= 3,
            timeout_s=15,
            what="three reconciles",
        )
        assert (await rows())[0]["status"] == "published"
        (log,) = (await sandbox.get("/_sandbox/records/manpower_logs", params={"company_id": company_id})).json()
        if what == "edit":
            done = await sandbox.patch(f"/_sandbox/records/manpower_logs/{log['id']}", json={"num_hours": "9"})
        else:
            done = await sandbox.delete(f"/_sandbox/records/manpower_logs/{log['id']}")
        assert done.status_code == 200, done.text
        (row,) = await eventually(rows, lambda r: r[0]["status"] == "failed", timeout_s=15, what="reconciled")
        assert row["conflict"] is True, row
        assert row["last_error"] == (CHANGED_IN_PROCORE if what == "edit" else DELETED_IN_PROCORE), row
        assert (await sandbox.get("/_sandbox/webhook-deliveries")).json() == []  # nothing was delivered
