"""What the end-to-end tests do through the system's public edges, as office staff and MobiClocks core would: sign
in and connect Procore with OAuth, wait for a command, sync and auto-map, send reference data and timelogs, read a
cell and publish it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date
from typing import Any

import httpx

from shared.events import ReferenceKind, ReferenceUpserted, TimelogUpserted
from shared.topics import Topics
from tests.support.kafka import eventually, produce
from tests.support.mapping import oauth_round_trip, sandbox_user


async def finished(gw: httpx.AsyncClient, auth: dict[str, str], accepted: httpx.Response) -> dict[str, Any]:
    """The command the gateway accepted (202) ran to `done`; its result."""
    assert accepted.status_code == 202, accepted.text
    command_id = accepted.json()["command_id"]

    async def probe() -> dict[str, Any]:
        return dict((await gw.get(f"/api/commands/{command_id}", headers=auth)).json())

    result = await eventually(probe, lambda r: r["status"] != "pending", timeout_s=30, what=f"command {command_id}")
    assert result["status"] == "done", result
    return result


async def connected_for_timecards(
    gw: httpx.AsyncClient, sandbox_url: str, account: str, login: str, company_id: int
) -> dict[str, str]:
    """The office user of `account` signs in, connects Procore with OAuth (`login`, a Procore user of the company,
    consents) and chooses the company for timecards on Setup; the user's Authorization header."""
    signed_in = await gw.post("/api/dev/login", json={"account_id": account, "user_id": "office"})
    auth = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    await sandbox_user(sandbox_url, login, [company_id])
    connected = await oauth_round_trip(gw, auth, login)
    await eventually(
        lambda: gw.get(f"/api/commands/{connected.command_id}", headers=auth),
        lambda r: r.json()["status"] == "done",
        timeout_s=30,
        what="connected",
    )
    setup = {"procore_company_id": company_id, "enabled_modules": ["timecard"], "two_way": False}
    await finished(gw, auth, await gw.put("/api/setup", json=setup, headers=auth))
    return auth


async def synced_and_auto_mapped(gw: httpx.AsyncClient, auth: dict[str, str], entity: str) -> dict[str, Any]:
    """Sync the entity's Procore list, then auto-map it; the auto-map's result."""
    await finished(gw, auth, await gw.post(f"/api/mapping/{entity}/sync", headers=auth))
    return await finished(gw, auth, await gw.post(f"/api/mapping/{entity}/auto-map", json={}, headers=auth))


async def send_references(
    kafka_bootstrap: str, topics: Topics, account: str, items: Iterable[tuple[ReferenceKind, str, str, str]]
) -> None:
    """MobiClocks core's reference data: (kind, id, name, number) each."""
    await produce(
        kafka_bootstrap,
        topics.reference,
        [
            ReferenceUpserted(account_id=account, kind=kind, entity_id=i, name=n, number=num)
            for kind, i, n, num in items
        ],
        key=account.encode(),
    )


def timelog(
    account: str, timelog_id: str, employee_id: str, job_site_id: str, work_date: date, **fields: Any
) -> TimelogUpserted:
    """A first revision of a timelog of 8 hours for MobiClocks company "co-1" (`fields` change or add to it)."""
    values: dict[str, Any] = {"company_id": "co-1", "duration_seconds": 8 * 3600, "pay_id": "REG"} | fields
    return TimelogUpserted(
        account_id=account,
        timelog_id=timelog_id,
        revision=1,
        employee_id=employee_id,
        job_site_id=job_site_id,
        work_date=work_date,
        **values,
    )


async def send_timelogs(kafka_bootstrap: str, topics: Topics, timelogs: Sequence[TimelogUpserted]) -> None:
    """Sent as MobiClocks core sends them, keyed by account and job site (one of each here)."""
    first = timelogs[0]
    await produce(
        kafka_bootstrap, topics.timelogs, list(timelogs), key=f"{first.account_id}:{first.job_site_id}".encode()
    )


def cell_rows(
    gw: httpx.AsyncClient, auth: dict[str, str], module: str, job_site_id: str, work_date: date
) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    """Reads the rows of one cell (none while the cell is not there yet)."""

    async def rows() -> list[dict[str, Any]]:
        response = await gw.get(f"/api/modules/{module}/cells/{job_site_id}/{work_date}", headers=auth)
        return list(response.json()["rows"]) if response.status_code == 200 else []

    return rows


async def publish_cell(
    gw: httpx.AsyncClient, auth: dict[str, str], module: str, job_site_id: str, work_date: date
) -> httpx.Response:
    """Ask the gateway to publish one cell; its answer."""
    scope = {"kind": "cell", "job_site_id": job_site_id, "work_date": str(work_date)}
    return await gw.post(f"/api/modules/{module}/publish", json={"action": "publish", "scope": scope}, headers=auth)
