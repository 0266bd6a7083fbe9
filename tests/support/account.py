"""One account made ready to publish manpower through the gateway, as office staff would: a Procore company
seeded in the sandbox, a dev login, a connection proved by the company's own service account, Setup, the
job site's project and the crew's vendor mapped, and the job site's name sent as MobiClocks core would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from shared.events import ReferenceKind, ReferenceUpserted
from shared.topics import Topics
from tests.support.kafka import eventually, produce
from tests.support.mapping import service_account

PERMISSIONS = ["procore.publish", "procore.mapping", "procore.setup"]


@dataclass(frozen=True)
class ReadyAccount:
    auth: dict[str, str]
    """The signed-in user's Authorization header."""
    company: dict[str, Any]
    """The sandbox's seeded company (`company_id`, `projects`, `vendors`)."""


async def manpower_ready_account(
    gw: httpx.AsyncClient,
    sandbox_url: str,
    kafka_bootstrap: str,
    topics: Topics,
    *,
    account: str,
    user: str,
    company: str,
    site: tuple[str, str],
    vendor: str,
    timeout_s: float = 60,
) -> ReadyAccount:
    """`site` = (job site id, its name, also the Procore project's); `vendor` = the MobiClocks company id."""
    site_id, site_name = site
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as sandbox:
        body = {"name": company, "projects": [{"name": site_name}], "vendors": [{"name": "Acme"}]}
        seeded = (await sandbox.post("/_sandbox/companies", json=body)).json()
    login = await gw.post("/api/dev/login", json={"account_id": account, "user_id": user, "permissions": PERMISSIONS})
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    # The company's own service account proves the company is this account's.
    client_id, secret = await service_account(sandbox_url, seeded["company_id"])
    connect = await gw.post(
        "/api/procore/connection",
        json={"grant": "client_credentials", "client_id": client_id, "client_secret": secret},
        headers=auth,
    )
    assert connect.status_code == 202, connect.text
    await eventually(
        lambda: gw.get(f"/api/commands/{connect.json()['command_id']}", headers=auth),
        lambda r: r.json()["status"] == "done",
        timeout_s=timeout_s,
        what="connected",
    )
    setup = {"procore_company_id": seeded["company_id"], "enabled_modules": ["manpower"], "two_way": False}
    assert (await gw.put("/api/setup", json=setup, headers=auth)).status_code == 202
    for entity, mc_id, procore_id in (
        ("project", site_id, seeded["projects"][0]["id"]),
        ("vendor", vendor, seeded["vendors"][0]),
    ):
        response = await gw.put(f"/api/mappings/{entity}/{mc_id}", json={"procore_id": procore_id}, headers=auth)
        assert response.status_code == 202, response.text
    await produce(
        kafka_bootstrap,
        topics.reference,
        [ReferenceUpserted(account_id=account, kind=ReferenceKind.JOB_SITE, entity_id=site_id, name=site_name)],
    )
    return ReadyAccount(auth, seeded)
