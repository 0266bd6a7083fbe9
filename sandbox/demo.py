"""Demo data for `make run` and docker compose's `demo` profile: a Procore sandbox company, a Procore user of it,
and a MobiClocks account that uses it. (It stands in for Procore, MobiClocks core and an office admin, as the rest
of `sandbox/` stands in for external systems; it lives here so the image has it and devstack does not.)

Everything goes in through the public edges: the sandbox's control API (as if the company and its user
existed in Procore), the gateway (the account connects as an office admin would: "Connect with Procore",
the Procore user consents, so the company is bound to the account by proof) and Kafka events (as
MobiClocks core and the dashboard would send them).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from shared.events import (
    ConfigureSetup,
    Module,
    Permission,
    ProcoreEntity,
    ReferenceKind,
    ReferenceUpserted,
    SetMapping,
    SystemPrincipal,
    TimelogUpserted,
)
from shared.topics import Topics

ACCOUNT = "demo"
DEMO_LOADER = SystemPrincipal("system:devstack-demo", (Permission.SETUP, Permission.MAPPING))
"""The back-end caller that sends the demo account's setup and mappings straight to Kafka: named, with exactly
the permissions those commands need (the mapping service refuses commands without a permissions list)."""
PROCORE_USER = ("pat@demo-builders.example", "Pat Demo")
"""The demo company's Procore user: the one who consents when the demo account connects."""
SITES = [
    ("site-tower", "Tower A", "P-100"),
    ("site-bridge", "Harbor Bridge", "P-200"),
    ("site-school", "Elm School", "P-300"),
]
COMPANIES = [("co-acme", "Acme Concrete", "V-1"), ("co-bolt", "Bolt Electric", "V-2")]
COST_CODES = [
    ("cc-concrete", "Concrete", "03-300"),
    ("cc-framing", "Framing", "06-100"),
    ("cc-wiring", "Wiring", "26-050"),
]
PAY_IDS = [("pay-reg", "Regular", "REG"), ("pay-ot", "Overtime", "OT")]
CREWS = ["Pour crew", "Finishers", "Electricians"]


async def seed_sandbox(base_url: str) -> dict[str, Any]:
    company = {
        "name": "Demo Builders Inc.",
        "projects": [
            {
                "name": name,
                "project_number": number,
                "cost_codes": [{"full_code": c, "name": n} for _, n, c in COST_CODES],
            }
            for _, name, number in SITES[:2]  # Elm School stays unmapped: its cells show Non publishable
        ],
        "vendors": [{"name": name} for _, name, _ in COMPANIES],
        "people": [{"first_name": f"Worker {i}", "last_name": "Demo", "employee_id": f"E{i:03d}"} for i in range(1, 9)],
    }
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.post("/_sandbox/companies", json=company)
        response.raise_for_status()
        seeded: dict[str, Any] = response.json()
        login, name = PROCORE_USER
        user = await http.post(
            "/_sandbox/users", json={"login": login, "name": name, "company_ids": [seeded["company_id"]]}
        )
        user.raise_for_status()
        types = await http.get(
            f"/rest/v1.0/companies/{seeded['company_id']}/timecard_time_types",
            headers={"Procore-Company-Id": str(seeded["company_id"]), "Authorization": f"Bearer {await _token(http)}"},
        )
        seeded["time_types"] = types.json() if types.status_code == 200 else []
    return seeded


async def _token(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/oauth/token",
        json={"grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret"},
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def demo_events(seeded: dict[str, Any], today: date) -> tuple[list[BaseModel], list[BaseModel], list[BaseModel]]:
    """(mapping commands, reference events, timelogs) for the demo account."""
    account = ACCOUNT
    reference: list[BaseModel] = []
    for kind, rows in (
        (ReferenceKind.JOB_SITE, SITES),
        (ReferenceKind.COMPANY, COMPANIES),
        (ReferenceKind.COST_CODE, COST_CODES),
        (ReferenceKind.PAY_ID, PAY_IDS),
    ):
        for entity_id, name, number in rows:
            reference.append(
                ReferenceUpserted(account_id=account, kind=kind, entity_id=entity_id, name=name, number=number)
            )
    employees = [(f"emp-{i}", f"Worker {i} Demo") for i in range(1, 9)]
    for entity_id, name in employees:
        reference.append(
            ReferenceUpserted(account_id=account, kind=ReferenceKind.EMPLOYEE, entity_id=entity_id, name=name)
        )

    commands: list[BaseModel] = [
        ConfigureSetup(
            account_id=account,
            procore_company_id=seeded["company_id"],
            enabled_modules=list(Module),
            **DEMO_LOADER.requester(),
        )
    ]

    def mapping(entity: ProcoreEntity, mc_id: str, procore_id: int, project: int | None = None) -> None:
        commands.append(
            SetMapping(
                account_id=account,
                entity=entity,
                mobiclocks_id=mc_id,
                procore_id=procore_id,
                procore_project_id=project,
                **DEMO_LOADER.requester(),
            )
        )

    for (site_id, _, _), project in zip(SITES[:2], seeded["projects"], strict=True):
        mapping(ProcoreEntity.PROJECT, site_id, project["id"])
        for (cc_id, _, _), code in zip(COST_CODES[:2], project["cost_codes"], strict=False):
            mapping(ProcoreEntity.COST_CODE, cc_id, code["id"], project["id"])
    for (company_id, _, _), vendor_id in zip(COMPANIES, seeded["vendors"], strict=True):
        mapping(ProcoreEntity.VENDOR, company_id, vendor_id)
    for (emp_id, _), person_id in zip(employees, seeded["people"], strict=False):
        mapping(ProcoreEntity.EMPLOYEE, emp_id, person_id)
    time_types = [t["id"] for t in seeded.get("time_types", [])]
    if time_types:
        mapping(ProcoreEntity.PAYROLL_TYPE, "pay-reg", time_types[0])

    rng = random.Random(7)
    timelogs: list[BaseModel] = []
    # Last week and this week up to today, working days only: timelogs never lie in the future.
    monday = today - timedelta(days=today.weekday() + 7)
    days = [monday + timedelta(days=i) for i in range(14)]
    n = 0
    for day in (d for d in days if d.weekday() < 5 and d <= today):
        for site_id, _, _ in SITES:
            for emp_index, (emp_id, _) in enumerate(employees):
                if rng.random() < 0.3:
                    continue
                n += 1
                company_id = COMPANIES[emp_index % 2][0]
                start = datetime(day.year, day.month, day.day, 7, 0, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 60))
                hours = rng.choice([6, 7.5, 8, 8, 8, 9.5])
                cc = COST_CODES[emp_index % 3][0]
                timelogs.append(
                    TimelogUpserted(
                        account_id=account,
                        timelog_id=f"tl-{n}",
                        revision=1,
                        employee_id=emp_id,
                        company_id=company_id,
                        crew_tag=CREWS[emp_index % 3],
                        job_site_id=site_id,
                        work_date=day,
                        clock_in=start,
                        clock_out=start + timedelta(hours=hours),
                        cost_code_id=cc,
                        pay_id="pay-ot" if hours > 9 else "pay-reg",
                        quantities=[{"cost_code_id": cc, "unit_of_measure": "m3", "units": rng.randint(1, 6)}]
                        if cc == "cc-concrete"
                        else [],
                    )
                )
    return commands, reference, timelogs


async def connect_demo(
    gateway_url: str, timeout_s: float = 60.0, token: str | None = None, procore_url: str | None = None
) -> str:
    """Connect the demo account as its admin would in Setup: authorize, the Procore user consents (login_hint
    stands for the sandbox's sign-in page), back to the gateway's callback in the same browser (its cookie).
    Returns the connection's outcome message once the company is proven and bound.

    `token`: the admin's (default: the gateway's dev login). `procore_url`: where this process reaches the
    sandbox when the authorization page's address is the browser's (compose: localhost:8090 on the host)."""
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10) as browser:
        if token is None:
            login = await browser.post("/api/dev/login", json={"account_id": ACCOUNT, "user_id": "demo-admin"})
            login.raise_for_status()
            token = str(login.json()["access_token"])
        auth = {"Authorization": f"Bearer {token}"}
        authorize = await browser.get("/api/procore/authorize", headers=auth)
        authorize.raise_for_status()
        authorize_url = str(authorize.json()["authorize_url"])
        if procore_url is not None:
            authorize_url = procore_url.rstrip("/") + "/" + authorize_url.split("/", 3)[3]
        async with httpx.AsyncClient(timeout=10) as procore:
            consent = await procore.get(f"{authorize_url}&login_hint={PROCORE_USER[0]}")
        callback = urlsplit(consent.headers.get("location", ""))
        back = await browser.get(f"{callback.path}?{callback.query}")
        location = back.headers.get("location", "")
        if "connect_command=" not in location:
            raise RuntimeError(f"the demo account could not connect to Procore: {location}")
        command = location.split("connect_command=")[1]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            outcome = (await browser.get(f"/api/commands/{command}", headers=auth)).json()
            if outcome["status"] == "done":
                return str(outcome["message"])
            if outcome["status"] != "pending":
                raise RuntimeError(f"the demo account could not connect to Procore: {outcome['message']}")
            await asyncio.sleep(0.3)
    raise RuntimeError("the demo account's Procore connection did not finish in time")


async def send_demo(bootstrap: str, topics: Topics, seeded: dict[str, Any], today: date, gateway_url: str) -> int:
    """Connect the demo account (by its Procore user's consent), then send its setup, mappings and timelogs."""
    await connect_demo(gateway_url)
    commands, reference, timelogs = demo_events(seeded, today)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for topic, events in ((topics.reference, reference), (topics.mapping_commands, commands)):
            for event in events:
                await producer.send_and_wait(topic, event.model_dump_json().encode(), key=ACCOUNT.encode())
        for event in timelogs:
            assert isinstance(event, TimelogUpserted)
            key = f"{event.account_id}:{event.job_site_id}".encode()
            await producer.send(topics.timelogs, event.model_dump_json().encode(), key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(timelogs)


async def configure_through_gateway(gateway_url: str, token: str, commands: list[BaseModel]) -> None:
    """The demo account's setup and mappings through the gateway's API, as its admin would save them."""
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=10, headers=auth) as gateway:
        for command in commands:
            if isinstance(command, ConfigureSetup):
                body: dict[str, Any] = {
                    "procore_company_id": command.procore_company_id,
                    "enabled_modules": [m.value for m in command.enabled_modules],
                    "two_way": command.two_way,
                }
                response = await gateway.put("/api/setup", json=body)
            elif isinstance(command, SetMapping):
                body = {"procore_id": command.procore_id, "procore_project_id": command.procore_project_id}
                response = await gateway.put(f"/api/mappings/{command.entity.value}/{command.mobiclocks_id}", json=body)
            else:
                raise TypeError(f"not a setup or mapping command: {command!r}")
            response.raise_for_status()


async def send_as_core(
    bootstrap: str, topics: Topics, reference: list[BaseModel], timelogs: list[BaseModel], options: dict[str, Any]
) -> int:
    """Reference entities and timelogs as MobiClocks core sends them (`options`: its Kafka login)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **options)
    await producer.start()
    try:
        for event in reference:
            await producer.send_and_wait(topics.reference, event.model_dump_json().encode(), key=ACCOUNT.encode())
        for event in timelogs:
            assert isinstance(event, TimelogUpserted)
            await producer.send(
                topics.timelogs,
                event.model_dump_json().encode(),
                key=f"{event.account_id}:{event.job_site_id}".encode(),
            )
        await producer.flush()
    finally:
        await producer.stop()
    return len(timelogs)


async def seed_compose(gateway_url: str, procore_url: str, token: str, bootstrap: str, topics: Topics) -> str:
    """docker compose's demo: the sandbox company, the account connected and configured through the gateway with
    an admin's token, then its reference entities and timelogs from MobiClocks core."""
    from shared.kafka_security import KafkaConnectionSettings

    seeded = await seed_sandbox(procore_url)
    await connect_demo(gateway_url, token=token, procore_url=procore_url)
    commands, reference, timelogs = demo_events(seeded, date.today())
    await configure_through_gateway(gateway_url, token, commands)
    count = await send_as_core(bootstrap, topics, reference, timelogs, KafkaConnectionSettings().client_options())
    return f"demo: account '{ACCOUNT}', {count} timelogs, Procore company {seeded['company_id']}"


def main() -> None:
    """`python -m sandbox.demo`: seed docker compose's demo (settings from the environment: GATEWAY_URL,
    PROCORE_SANDBOX_URL, ISSUER_PORT, KAFKA_BOOTSTRAP_SERVERS, TOPIC_PREFIX and MobiClocks core's Kafka login)."""
    import os

    from sandbox.issuer import DEFAULT_PORT, MintRequest, mint_from_running

    token = mint_from_running(
        int(os.environ.get("ISSUER_PORT", DEFAULT_PORT)), MintRequest(account_id=ACCOUNT, user_id="demo-admin")
    )
    line = asyncio.run(
        seed_compose(
            os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000"),
            os.environ.get("PROCORE_SANDBOX_URL", "http://procore-sandbox:8090"),
            token,
            os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            Topics(os.environ.get("TOPIC_PREFIX", "")),
        )
    )
    print(line, flush=True)


if __name__ == "__main__":
    main()
