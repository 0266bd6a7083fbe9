"""Set accounts up as sandbox/demo.py does, through the public edges, and wait until the system shows it.

Per account: a sandbox company (the control API, as if it existed in Procore) with a service account the
customer created in it, MobiClocks reference entities (mobiclocks.reference), then what an administrator
does: connect with that service account in Setup (the gateway API: it proves the company, which is bound to
the account), then the commands (mapping.commands): choose the company and the modules, sync each tab and
map — projects first, then the cost codes of each mapped project. Everything except the entities left
unmapped on purpose (plan.py).
"""

from __future__ import annotations

import asyncio
import time

from tests.chaos import messages as m
from tests.chaos.clients import Gateway, Sandbox, Sender
from tests.chaos.generator import Outgoing
from tests.chaos.plan import AccountPlan


def reference_events(plan: AccountPlan) -> list[m.Json]:
    a = plan.account_id
    events = [m.reference_upserted(a, "job_site", s, f"Site {s}", f"P-{s}") for s in plan.sites]
    events += [m.reference_upserted(a, "company", c, f"Company {c}") for c in plan.companies]
    events += [m.reference_upserted(a, "employee", e, f"Employee {e}", f"E-{e}") for e in plan.employees]
    events += [m.reference_upserted(a, "cost_code", c, f"Code {c}", plan.cost_code_number(c)) for c in plan.cost_codes]
    events += [m.reference_upserted(a, "pay_id", p, f"Pay {p}", p) for p in plan.shape.pay_ids]
    return events


def setup_commands(plan: AccountPlan) -> list[m.Json]:
    ids = plan.procore
    assert ids is not None
    a = plan.account_id

    def sync(entity: str) -> m.Json:
        return m.mapping_command(a, "mapping.sync", entity=entity)

    def mapping(entity: str, mc_id: str, procore_id: int, project: int | None = None) -> m.Json:
        return m.mapping_command(
            a, "mapping.set", entity=entity, mobiclocks_id=mc_id, procore_id=procore_id, procore_project_id=project
        )

    commands = [
        m.mapping_command(
            a, "setup.configure", procore_company_id=ids.company_id, enabled_modules=list(plan.modules), two_way=False
        ),
        *(sync(e) for e in ("project", "vendor", "employee", "payroll_type")),
        *(mapping("project", site, ids.projects[site]) for site in plan.mapped_sites),
        sync("cost_code"),
    ]
    for site in plan.mapped_sites:
        for cc in plan.mapped_cost_codes:
            commands.append(mapping("cost_code", cc, ids.cost_codes[(site, cc)], ids.projects[site]))
    commands += [mapping("vendor", c, ids.vendors[c]) for c in plan.companies]
    commands += [mapping("employee", e, ids.people[e]) for e in plan.mapped_employees]
    commands += [mapping("payroll_type", p, ids.time_types[p]) for p in plan.shape.pay_ids]
    return commands


async def set_up(plans: list[AccountPlan], sandbox: Sandbox, sender: Sender, gateway: Gateway) -> None:
    """Seed, connect, configure, sync and map every account; fails naming the first command that did not work."""
    for plan in plans:
        plan.adopt_seed_answer(await sandbox.call("POST", "/companies", plan.company_seed()))
    references = [Outgoing(m.REFERENCE, p.account_id, e) for p in plans for e in reference_events(p)]
    await sender.send(references)
    await asyncio.gather(*(_connect(plan, sandbox, gateway) for plan in plans))
    commands = {p.account_id: setup_commands(p) for p in plans}
    # one account's commands share a key, so they are handled in this order
    await sender.send([Outgoing(m.MAPPING_COMMANDS, a, c) for a, cs in commands.items() for c in cs])
    await asyncio.gather(*(_wait_done(gateway, a, cs) for a, cs in commands.items()))
    await asyncio.gather(*(_wait_setup_seen(gateway, p) for p in plans))


async def _connect(plan: AccountPlan, sandbox: Sandbox, gateway: Gateway) -> None:
    """Setup > connect with the customer's own service account (its credentials reach only its company)."""
    assert plan.procore is not None
    client = await sandbox.call("POST", "/clients", {"company_ids": [plan.procore.company_id], "name": "customer"})
    body = {"grant": "client_credentials", "client_id": client["client_id"], "client_secret": client["client_secret"]}
    response = await gateway.call("POST", plan.account_id, "/api/procore/connection", json_body=body)
    if response.status_code != 202:
        raise RuntimeError(f"{plan.account_id}: connect refused: {response.status_code} {response.text[:300]}")
    await _wait_done(gateway, plan.account_id, [{"event_id": response.json()["command_id"], "type": "connect"}])


async def _wait_done(gateway: Gateway, account_id: str, commands: list[m.Json], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    last = commands[-1]["event_id"]
    while (await gateway.get(account_id, f"/api/commands/{last}"))["status"] == "pending":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{account_id}: setup commands not handled after {timeout_s:.0f}s")
        await asyncio.sleep(0.5)
    for command in commands:
        outcome = await gateway.get(account_id, f"/api/commands/{command['event_id']}")
        if outcome["status"] != "done":
            raise RuntimeError(f"{account_id}: {command['type']} {command.get('entity', '')} → {outcome}")


async def _wait_setup_seen(gateway: Gateway, plan: AccountPlan, timeout_s: float = 60) -> None:
    """The aggregator (whose read model the gateway shows) knows the company and the modules."""
    assert plan.procore is not None
    deadline = time.monotonic() + timeout_s
    while True:
        setup = await gateway.get(plan.account_id, "/api/setup")
        if setup.get("procore_company_id") == plan.procore.company_id and set(setup["enabled_modules"]) == set(
            plan.modules
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{plan.account_id}: the aggregator does not show the setup: {setup}")
        await asyncio.sleep(0.5)
