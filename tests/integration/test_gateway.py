"""Gateway against real PostgreSQL and a real Kafka-protocol broker.

A fresh schema gets the aggregator's migrations and hand-written entries of two accounts;
the app runs in-process (httpx ASGI transport, lifespan started) and its commands are read
back from the broker with aiokafka.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devstack.broker import LocalBroker, create_topics_and_wait
from services.gateway.bootstrap import build_app
from services.gateway.config import GatewaySettings
from services.gateway.tokens import Principal, issue_dev_token
from shared import db, labels
from shared.events import ConfigureSetup, PublishEntries, SetMapping
from shared.telemetry import make_tracer_provider
from shared.topics import Topics
from tests.support.database import layout_of, migrated, provisioned, role_dsn

pytestmark = pytest.mark.integration

DSN = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
SECRET = "integration-test-secret-0123456789-abcdef"
RUN = uuid.uuid4().hex[:10]
A = f"acc-a-{RUN}"
B = f"acc-b-{RUN}"
MON = date(2024, 6, 3)
TUE = MON + timedelta(days=1)
WED = MON + timedelta(days=2)
LATER = MON + timedelta(days=17)  # a Thursday two weeks on: the conflict's own week
ALL = ["procore.publish", "procore.mapping", "procore.setup"]

PAY_MISSING = "Pay ID OT has no payroll item"
CC_MISSING = "Cost code 03-300 Concrete is not mapped for project Tower A"


def token(account: str, permissions: list[str] | None = None, user: str = "u1") -> str:
    who = Principal(user, account, frozenset(ALL if permissions is None else permissions))
    return issue_dev_token(who, SECRET, 3600)


def auth(account: str = A, permissions: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(account, permissions)}"}


# --- fixtures ----------------------------------------------------------------------------


class Seeded:
    """The ids of the rows written into the read model."""

    def __init__(self) -> None:
        self.ids: dict[str, uuid.UUID] = {}


async def seed(conn: asyncpg.Connection) -> Seeded:
    s = Seeded()

    async def entry(
        name: str,
        account: str,
        module: str,
        site: str,
        day: date,
        dims: dict[str, Any],
        content: dict[str, str] | None,
        status: str,
        errors: list[str] | None = None,
        last_error: str | None = None,
    ) -> None:
        entry_id = uuid.uuid4()
        s.ids[name] = entry_id
        await conn.execute(
            """
            INSERT INTO entries (entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content,
                                 status, errors, last_error)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            """,
            entry_id,
            account,
            module,
            site,
            day,
            str(entry_id),
            dims,
            content,
            status,
            errors or [],
            last_error,
        )

    mp = "manpower"
    await entry(
        "crew1",
        A,
        mp,
        "s1",
        MON,
        {"company_id": "c1", "crew_tag": "Crew 1"},
        {"manpower": "3", "total_hours": "24.00", "average_hours": "8.00"},
        "published",
    )
    await entry(
        "crew2",
        A,
        mp,
        "s1",
        MON,
        {"company_id": "c2", "crew_tag": None},
        {"manpower": "2", "total_hours": "17.50", "average_hours": "8.75"},
        "failed",
        last_error="Procore: vendor is inactive",
    )
    await entry(
        "tue",
        A,
        mp,
        "s1",
        TUE,
        {"company_id": "c1", "crew_tag": "Crew 1"},
        {"manpower": "1", "total_hours": "8.00", "average_hours": "8.00"},
        "todo",
    )
    await entry(
        "annex",
        A,
        mp,
        "s2",
        WED,
        {"company_id": "c1", "crew_tag": "Crew 1"},
        {"manpower": "4", "total_hours": "30.00", "average_hours": "7.50"},
        "published",
    )
    await entry(
        "next_week",
        A,
        mp,
        "s1",
        MON + timedelta(days=7),
        {"company_id": "c1", "crew_tag": "X"},
        {"manpower": "9", "total_hours": "9.00", "average_hours": "1.00"},
        "todo",
    )
    tc = "timecard"
    await entry(
        "jane",
        A,
        tc,
        "s1",
        MON,
        {"employee_id": "e1", "pay_id": "p1", "cost_code_id": "cc1", "pay_class_id": "pc1"},
        {"hours": "8.00"},
        "todo",
    )
    await entry(
        "john",
        A,
        tc,
        "s1",
        MON,
        {"employee_id": "e2", "pay_id": "p2", "cost_code_id": "cc1", "pay_class_id": None},
        {"hours": "2.00"},
        "non_publishable",
        [PAY_MISSING],
    )
    await entry(
        "jim",
        A,
        tc,
        "s1",
        MON,
        {"employee_id": "e3", "pay_id": "p2", "cost_code_id": "cc1", "pay_class_id": None},
        {"hours": "1.50"},
        "non_publishable",
        [PAY_MISSING, CC_MISSING],
    )
    pq = "production_quantity"
    await entry("concrete", A, pq, "s1", MON, {"cost_code_id": "cc1", "unit_of_measure": "m3"}, {"units": "12"}, "todo")
    await entry("steel", A, pq, "s1", MON, {"cost_code_id": "cc2", "unit_of_measure": "t"}, {"units": "3"}, "published")
    # Account B uses the very same job site id: nothing of it may show up for A, and vice versa.
    # Edited in Procore after our publish: a conflict, on a day of its own.
    await entry(
        "conflict",
        A,
        mp,
        "s2",
        LATER,
        {"company_id": "c2", "crew_tag": None},
        {"manpower": "1", "total_hours": "8.00", "average_hours": "8.00"},
        "failed",
        last_error=labels.CHANGED_IN_PROCORE,
    )
    await entry(
        "b_crew",
        B,
        mp,
        "s1",
        MON,
        {"company_id": "c1", "crew_tag": "B crew"},
        {"manpower": "7", "total_hours": "56.00", "average_hours": "8.00"},
        "todo",
    )

    names = [
        (A, "job_site", "s1", "Tower A", "TA-1"),
        (A, "job_site", "s2", "Annex", None),
        (A, "company", "c1", "Acme Concrete", None),
        (A, "company", "c2", "Bravo Steel", None),
        (A, "employee", "e1", "Jane Doe", None),
        (A, "employee", "e2", "John Roe", None),
        (A, "employee", "e3", "Jim Poe", None),
        (A, "pay_id", "p1", "REG", None),
        (A, "pay_id", "p2", "OT", None),
        (A, "pay_class", "pc1", "Journeyman", None),
        (A, "cost_code", "cc1", "Concrete", "03-300"),
        (A, "cost_code", "cc2", "Steel", "05-100"),
        (B, "job_site", "s1", "B headquarters", None),
    ]
    await conn.executemany("INSERT INTO reference_names VALUES ($1, $2, $3, $4, $5)", names)
    await conn.execute(
        "INSERT INTO mappings (account_id, entity, mobiclocks_id, procore_id, procore_name)"
        " VALUES ($1, 'payroll_type', 'p1', 501, 'Regular Time'), ($2, 'payroll_type', 'p2', 777, 'B overtime'),"
        " ($1, 'project', 's1', 9001, 'Tower A')",
        A,
        B,
    )
    await conn.execute(
        "INSERT INTO publish_history (entry_id, request_id, action, requested_by, outcome, message)"
        " VALUES ($1, $2, 'publish', 'u1', NULL, 'create'), ($1, $2, 'result', NULL, 'failed', $3)",
        s.ids["crew2"],
        uuid.uuid4(),
        "Procore: vendor is inactive",
    )
    return s


@pytest.fixture(scope="module")
async def gw_schema() -> AsyncIterator[str]:
    """The aggregator's schema (its roles provisioned, migrated as its role); the tests seed it as administrator."""
    async with provisioned(DSN, f"gw_{RUN}_") as database:
        await migrated(database, "aggregator")
        yield database.schema("aggregator")


@pytest.fixture(scope="module")
async def seeded(gw_schema: str) -> Seeded:
    conn = await asyncpg.connect(DSN, server_settings={"search_path": gw_schema})
    try:
        await db._init_connection(conn)
        async with conn.transaction():
            return await seed(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def gw_kafka() -> AsyncIterator[str]:
    async with LocalBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="module")
def gw_topics() -> Topics:
    return Topics(f"gw{RUN}.")


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def settings_for(bootstrap: str, schema: str, topics: Topics, dev_login: bool) -> GatewaySettings:
    layout = layout_of({"aggregator": schema})
    return GatewaySettings(
        kafka_bootstrap_servers=bootstrap,
        database_url=role_dsn(DSN, layout.role("gateway")),  # reads the aggregator's read contract only
        topic_prefix=topics.prefix,
        environment="development",
        jwt_secret=SECRET,
        dev_login=dev_login,
        aggregator_schema=schema,
        mapping_schema=layout.schema("mapping"),
    )


@pytest.fixture(scope="module")
async def client(
    gw_kafka: str, gw_schema: str, seeded: Seeded, gw_topics: Topics, spans: InMemorySpanExporter
) -> AsyncIterator[httpx.AsyncClient]:
    await create_topics_and_wait(gw_kafka, [gw_topics.publish_commands, gw_topics.mapping_commands], partitions=1)
    provider = make_tracer_provider("gateway", extra_processors=(SimpleSpanProcessor(spans),))
    app = build_app(settings_for(gw_kafka, gw_schema, gw_topics, dev_login=True), tracer_provider=provider)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http,
    ):
        yield http


async def consume_one(bootstrap: str, topic: str, event_id: str, wait_s: float = 20.0) -> Any:
    """The record on `topic` whose JSON body has this event_id."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        async with asyncio.timeout(wait_s):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        if json.loads(record.value)["event_id"] == event_id:
                            return record
    finally:
        await consumer.stop()


# --- queries -----------------------------------------------------------------------------


async def test_health_checks_database_and_broker(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "broker": True}


async def test_me(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/me", headers=auth(A, ["procore.publish"]))
    assert response.json() == {"user_id": "u1", "account_id": A, "permissions": ["procore.publish"]}


async def test_manpower_dashboard_numbers(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/modules/manpower/dashboard", params={"week_start": MON.isoformat()}, headers=auth()
    )
    assert response.status_code == 200
    board = response.json()
    assert board["days"][0] == "2024-06-03"
    assert len(board["days"]) == 7
    assert [r["job_site"]["name"] for r in board["rows"]] == ["Annex", "Tower A"]
    tower = board["rows"][1]
    assert tower["job_site"] == {"job_site_id": "s1", "name": "Tower A", "number": "TA-1"}
    monday = tower["days"][0]
    assert (monday["manpower"], monday["total_hours"], monday["status"]) == (5, "41.50", "failed")
    assert monday["counts"] == {"published": 1, "failed": 1}
    assert monday["actions"] == ["publish", "republish", "force_publish"]
    assert tower["days"][1]["manpower"] == 1
    assert tower["days"][1]["status"] == "todo"
    assert tower["days"][2:] == [None] * 5  # next week's entry is not in this week
    annex = board["rows"][0]["days"][2]
    assert (annex["manpower"], annex["status"], annex["actions"]) == (4, "published", ["force_publish"])


async def test_timecard_and_production_quantity_dashboards(client: httpx.AsyncClient) -> None:
    params = {"week_start": MON.isoformat()}
    timecard = (await client.get("/api/modules/timecard/dashboard", params=params, headers=auth())).json()
    cell = timecard["rows"][0]["days"][0]
    assert (cell["timecards"], cell["status"], "manpower" in cell) == (3, "non_publishable", False)
    assert cell["actions"] == ["publish", "force_publish"]

    pq = (await client.get("/api/modules/production_quantity/dashboard", params=params, headers=auth())).json()
    cell = pq["rows"][0]["days"][0]
    assert [(pq["cost_codes"][cc], quantity, unit) for cc, unit, quantity in cell["quantities"]] == [
        ("03-300 Concrete", "12", "m3"),
        ("05-100 Steel", "3", "t"),
    ]
    assert cell["status"] == "todo"


async def test_status_filter(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/modules/manpower/dashboard", params={"week_start": MON.isoformat(), "status": "failed"}, headers=auth()
    )
    board = response.json()
    assert board["status_filter"] == ["failed"]
    assert [r["job_site"]["job_site_id"] for r in board["rows"]] == ["s1"]
    monday = board["rows"][0]["days"][0]
    assert (monday["manpower"], monday["total_hours"], monday["counts"]) == (2, "17.50", {"failed": 1})
    assert board["rows"][0]["days"][1] is None

    both = await client.get(
        "/api/modules/manpower/dashboard?week_start=2024-06-03&status=failed&status=published", headers=auth()
    )
    assert [r["job_site"]["name"] for r in both.json()["rows"]] == ["Annex", "Tower A"]


async def test_week_pages_and_name_filter(client: httpx.AsyncClient) -> None:
    """A page of job sites (sorted by name) carries the same cells as the whole week; q filters by name or number."""
    url, week = "/api/modules/manpower/dashboard", {"week_start": MON.isoformat()}
    whole = (await client.get(url, params=week, headers=auth())).json()
    assert (whole["total_rows"], whole["offset"], whole["limit"], whole["q"]) == (2, 0, None, "")
    first = (await client.get(url, params={**week, "limit": 1}, headers=auth())).json()
    second = (await client.get(url, params={**week, "limit": 1, "offset": 1}, headers=auth())).json()
    assert (first["total_rows"], first["limit"], second["offset"]) == (2, 1, 1)
    assert first["rows"] + second["rows"] == whole["rows"]
    tower = (await client.get(url, params={**week, "q": "ta-1"}, headers=auth())).json()
    assert [r["job_site"]["name"] for r in tower["rows"]] == ["Tower A"]
    assert tower["total_rows"] == 1
    assert tower["rows"] == whole["rows"][1:]
    none = (await client.get(url, params={**week, "q": "nowhere"}, headers=auth())).json()
    assert (none["rows"], none["total_rows"]) == ([], 0)
    too_many = await client.get(url, params={**week, "limit": 501}, headers=auth())
    assert too_many.status_code == 422
    # Every module's pages (read joined to the page's job sites) carry the whole week's cells, quantities included.
    for module in ("manpower", "timecard", "production_quantity"):
        url = f"/api/modules/{module}/dashboard"
        whole = (await client.get(url, params=week, headers=auth())).json()
        pages = [
            (await client.get(url, params={**week, "limit": 1, "offset": i}, headers=auth())).json()["rows"]
            for i in range(whole["total_rows"])
        ]
        assert whole["rows"]
        assert [row for page in pages for row in page] == whole["rows"], module


async def test_manpower_details(client: httpx.AsyncClient, seeded: Seeded) -> None:
    response = await client.get("/api/modules/manpower/cells/s1/2024-06-03", headers=auth())
    assert response.status_code == 200
    details = response.json()
    assert [c["label"] for c in details["columns"]] == [
        "Company name",
        "Crew tag",
        "Total hours",
        "Manpower",
        "Average",
        "Status",
    ]
    rows = {r["company_name"]: r for r in details["rows"]}
    acme, bravo = rows["Acme Concrete"], rows["Bravo Steel"]
    assert (acme["crew_tag"], acme["total_hours"], acme["manpower"], acme["average"], acme["status"]) == (
        "Crew 1",
        "24.00",
        3,
        "8.00",
        "published",
    )
    assert acme["actions"] == []
    assert acme["entry_id"] == str(seeded.ids["crew1"])
    assert bravo["status"] == "failed"
    assert bravo["actions"] == ["republish"]
    assert bravo["last_error"] == "Procore: vendor is inactive"
    assert details["status"] == "failed"
    assert details["errors"] == []
    assert details["job_site"]["name"] == "Tower A"


async def test_timecard_details_with_payroll_items_and_errors_panel(client: httpx.AsyncClient, seeded: Seeded) -> None:
    details = (await client.get("/api/modules/timecard/cells/s1/2024-06-03", headers=auth())).json()
    assert [c["label"] for c in details["columns"]] == [
        "Employee",
        "Pay class",
        "Cost code",
        "Pay ID",
        "Payroll item",
        "Timelog duration",
        "Status",
    ]
    jane, jim, john = details["rows"]
    assert (jane["employee"], jane["pay_class"], jane["cost_code"], jane["pay_id"], jane["payroll_item"]) == (
        "Jane Doe",
        "Journeyman",
        "03-300 Concrete",
        "REG",
        "Regular Time",
    )
    assert jane["timelog_duration"] == "8.00"
    assert (john["employee"], john["pay_id"], john["payroll_item"], john["status"]) == (
        "John Roe",
        "OT",
        None,
        "non_publishable",
    )
    # Each reason names the mapping row that fixes it: cost codes in the Procore project of the job site.
    pay_fix = {"entity": "payroll_type", "mobiclocks_id": "p2", "project_id": None}
    cc_fix = {"entity": "cost_code", "mobiclocks_id": "cc1", "project_id": "9001"}
    assert jim["errors"] == [{"text": PAY_MISSING, "fix": pay_fix}, {"text": CC_MISSING, "fix": cc_fix}]
    panel = {e["text"]: (set(e["entry_ids"]), e["fix"]) for e in details["errors"]}
    assert panel == {
        PAY_MISSING: ({str(seeded.ids["john"]), str(seeded.ids["jim"])}, pay_fix),
        CC_MISSING: ({str(seeded.ids["jim"])}, cc_fix),
    }


async def test_production_quantity_details(client: httpx.AsyncClient) -> None:
    details = (await client.get("/api/modules/production_quantity/cells/s1/2024-06-03", headers=auth())).json()
    assert [c["label"] for c in details["columns"]] == ["Cost code", "UM", "Unit", "Status"]
    assert [(r["cost_code"], r["um"], r["unit"], r["status"]) for r in details["rows"]] == [
        ("03-300 Concrete", "m3", "12", "todo"),
        ("05-100 Steel", "t", "3", "published"),
    ]


async def test_entry_with_publish_history(client: httpx.AsyncClient, seeded: Seeded) -> None:
    response = await client.get(f"/api/entries/{seeded.ids['crew2']}", headers=auth())
    assert response.status_code == 200
    entry = response.json()
    assert entry["status"] == "failed"
    assert entry["row"]["company_name"] == "Bravo Steel"
    assert [(h["action"], h["outcome"]) for h in entry["history"]] == [("publish", None), ("result", "failed")]
    assert entry["history"][1]["message"] == "Procore: vendor is inactive"


# --- auth and tenancy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/me", "/api/modules/manpower/dashboard", "/api/modules/manpower/cells/s1/2024-06-03"]
)
async def test_no_token_is_401(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_bad_and_expired_tokens_are_401(client: httpx.AsyncClient) -> None:
    bad = await client.get("/api/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    old = issue_dev_token(Principal("u1", A), SECRET, 60, now=datetime.now(UTC) - timedelta(hours=2))
    expired = await client.get("/api/me", headers={"Authorization": f"Bearer {old}"})
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    forged = issue_dev_token(Principal("u1", A), "x" * 40, 60)
    assert (await client.get("/api/me", headers={"Authorization": f"Bearer {forged}"})).status_code == 401


async def test_missing_permission_is_403_naming_it(client: httpx.AsyncClient) -> None:
    publish = await client.post(
        "/api/modules/manpower/publish",
        json={"action": "publish", "scope": {"kind": "cell", "job_site_id": "s1", "work_date": "2024-06-03"}},
        headers=auth(A, ["procore.mapping"]),
    )
    assert publish.status_code == 403
    # The role permission's name for people, the key for programs.
    assert publish.json()["detail"] == "This needs the Procore publishing permission."
    assert publish.json()["permission"] == "procore.publish"
    mapping = await client.put("/api/mappings/vendor/c1", json={"procore_id": 5}, headers=auth(A, ["procore.publish"]))
    assert mapping.status_code == 403
    assert "Procore Connect data mapping" in mapping.json()["detail"]
    setup = await client.put(
        "/api/setup", json={"procore_company_id": 1, "enabled_modules": ["manpower"]}, headers=auth(A, [])
    )
    assert setup.status_code == 403
    assert setup.json()["permission"] == "procore.setup"


async def test_accounts_never_see_each_other(client: httpx.AsyncClient, seeded: Seeded) -> None:
    board = (await client.get("/api/modules/manpower/dashboard?week_start=2024-06-03", headers=auth(B))).json()
    assert [r["job_site"]["name"] for r in board["rows"]] == ["B headquarters"]
    assert board["rows"][0]["days"][0]["manpower"] == 7
    # A's cell on Tuesday and A's entry by id do not exist for B.
    cell = await client.get("/api/modules/manpower/cells/s1/2024-06-04", headers=auth(B))
    assert cell.status_code == 404
    entry = await client.get(f"/api/entries/{seeded.ids['crew2']}", headers=auth(B))
    assert entry.status_code == 404
    # Same job site id, same day: B sees only its own crew.
    mine = (await client.get("/api/modules/manpower/cells/s1/2024-06-03", headers=auth(B))).json()
    assert [r["crew_tag"] for r in mine["rows"]] == ["B crew"]
    assert mine["job_site"]["name"] == "B headquarters"  # A names its s1 "Tower A"
    assert mine["rows"][0]["company_name"] == "c1"  # B has no name for its company c1; A's is "Acme Concrete"
    timecards = (await client.get("/api/modules/timecard/dashboard?week_start=2024-06-03", headers=auth(B))).json()
    assert timecards["rows"] == []
    publish_a = await client.post(
        "/api/modules/manpower/publish",
        json={"action": "republish", "scope": {"kind": "entries", "entry_ids": [str(seeded.ids["crew2"])]}},
        headers=auth(B),
    )
    assert publish_a.status_code == 404
    assert publish_a.json()["detail"].startswith("1 of these Manpower entries cannot be found")


# --- commands -----------------------------------------------------------------------------


async def test_publish_cell_sends_publish_entries_for_the_tokens_account(
    client: httpx.AsyncClient, gw_kafka: str, gw_topics: Topics, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    response = await client.post(
        "/api/modules/manpower/publish",
        json={
            "account_id": B,  # ignored: commands act on the token's account
            "action": "publish",
            "scope": {"kind": "cell", "job_site_id": "s1", "work_date": "2024-06-03"},
        },
        headers=auth(A, ["procore.publish"]),
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["eligible_entries"] == 1  # the failed crew; the published one needs force publish
    record = await consume_one(gw_kafka, gw_topics.publish_commands, accepted["command_id"])
    command = PublishEntries.model_validate_json(record.value)
    assert command.account_id == A
    assert (command.module.value, command.action.value, command.requested_by) == ("manpower", "publish", "u1")
    assert command.scope.model_dump(mode="json") == {"kind": "cell", "job_site_id": "s1", "work_date": "2024-06-03"}
    assert record.key == f"{A}:s1".encode()
    # The command carries the HTTP request's trace.
    headers = {k: v.decode() for k, v in record.headers}
    server = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
    assert server, "the request was traced"
    assert f"{server[0].context.trace_id:032x}" in headers["traceparent"]


async def test_republish_entries_and_force_publish_range(
    client: httpx.AsyncClient, gw_kafka: str, gw_topics: Topics, seeded: Seeded
) -> None:
    entries = await client.post(
        "/api/modules/manpower/publish",
        json={"action": "republish", "scope": {"kind": "entries", "entry_ids": [str(seeded.ids["crew2"])]}},
        headers=auth(),
    )
    assert entries.status_code == 202
    assert entries.json()["eligible_entries"] == 1
    record = await consume_one(gw_kafka, gw_topics.publish_commands, entries.json()["command_id"])
    assert record.key == f"{A}:s1".encode()
    assert PublishEntries.model_validate_json(record.value).scope.kind == "entries"

    scope = {"kind": "date_range", "date_from": "2024-06-03", "date_to": "2024-06-09"}
    blind = await client.post(
        "/api/modules/manpower/publish", json={"action": "force_publish", "scope": scope}, headers=auth()
    )
    assert blind.status_code == 409  # never without the confirmation (tests/integration/test_gateway_force_preview.py)
    preview = await client.post("/api/modules/manpower/force-publish/preview", json={"scope": scope}, headers=auth())
    assert preview.status_code == 200, preview.text
    # Nothing of these was published before: no Procore record to read, each would be created.
    assert {e["effect"] for e in preview.json()["entries"]} == {"create"}
    week = await client.post(
        "/api/modules/manpower/publish",
        json={"action": "force_publish", "scope": scope, "preview_id": preview.json()["preview_id"]},
        headers=auth(),
    )
    assert week.status_code == 202
    assert week.json()["eligible_entries"] == 4
    record = await consume_one(gw_kafka, gw_topics.publish_commands, week.json()["command_id"])
    command = PublishEntries.model_validate_json(record.value)
    assert record.key == A.encode()
    assert command.account_id == A
    assert command.action.value == "force_publish"


async def test_publish_empty_cell_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/modules/manpower/publish",
        json={"action": "publish", "scope": {"kind": "cell", "job_site_id": "nowhere", "work_date": "2024-06-03"}},
        headers=auth(),
    )
    assert response.status_code == 404


async def test_set_mapping_and_setup_send_mapping_commands(
    client: httpx.AsyncClient, gw_kafka: str, gw_topics: Topics
) -> None:
    mapping = await client.put(
        "/api/mappings/cost_code/cc1",
        json={"procore_id": 9001, "procore_project_id": 42, "account_id": B},
        headers=auth(A, ["procore.mapping"]),
    )
    assert mapping.status_code == 202, mapping.text
    record = await consume_one(gw_kafka, gw_topics.mapping_commands, mapping.json()["command_id"])
    command = SetMapping.model_validate_json(record.value)
    assert (command.account_id, command.entity.value, command.mobiclocks_id) == (A, "cost_code", "cc1")
    assert (command.procore_id, command.procore_project_id, command.requested_by) == (9001, 42, "u1")
    assert record.key == A.encode()

    cleared = await client.put("/api/mappings/vendor/c1", json={"procore_id": None}, headers=auth())
    assert cleared.status_code == 202
    record = await consume_one(gw_kafka, gw_topics.mapping_commands, cleared.json()["command_id"])
    assert SetMapping.model_validate_json(record.value).procore_id is None

    setup = await client.put(
        "/api/setup",
        json={"procore_company_id": 77, "enabled_modules": ["manpower", "timecard"], "two_way": True},
        headers=auth(A, ["procore.setup"]),
    )
    assert setup.status_code == 202
    record = await consume_one(gw_kafka, gw_topics.mapping_commands, setup.json()["command_id"])
    configured = ConfigureSetup.model_validate_json(record.value)
    assert (configured.account_id, configured.procore_company_id, configured.two_way) == (A, 77, True)
    assert [m.value for m in configured.enabled_modules] == ["manpower", "timecard"]


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/api/modules/manpower/dashboard?week_start=June", None, "query.week_start"),
        ("GET", "/api/modules/manpower/dashboard?status=done", None, "query.status"),
        ("GET", "/api/modules/payroll/dashboard", None, "path.module"),
        ("GET", "/api/modules/manpower/cells/s1/yesterday", None, "path.work_date"),
        ("GET", "/api/entries/not-a-uuid", None, "path.entry_id"),
        (
            "POST",
            "/api/modules/manpower/publish",
            {"action": "send", "scope": {"kind": "date_range", "date_from": "2024-06-03", "date_to": "2024-06-09"}},
            "body.action",
        ),
        (
            "POST",
            "/api/modules/manpower/publish",
            {"action": "publish", "scope": {"kind": "cell", "job_site_id": "s1", "work_date": "2024-13-01"}},
            "body.scope.cell.work_date",
        ),
        (
            "POST",
            "/api/modules/manpower/publish",
            {"action": "publish", "scope": {"kind": "entries", "entry_ids": []}},
            "body.scope.entries.entry_ids",
        ),
        ("POST", "/api/modules/manpower/publish", {"action": "publish"}, "body.scope"),
        ("PUT", "/api/mappings/vendor/c1", {"procore_id": -1}, "body.procore_id"),
        ("PUT", "/api/mappings/cost_code/cc1", {"procore_id": 3}, "body.procore_project_id"),
        ("PUT", "/api/mappings/galaxy/c1", {"procore_id": 3}, "path.entity"),
        ("PUT", "/api/setup", {"procore_company_id": 1, "enabled_modules": ["payroll"]}, "body.enabled_modules.0"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, method: str, path: str, body: Any, field: str
) -> None:
    response = await client.request(method, path, json=body, headers=auth())
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(field), response.json()["message"]


# --- dev login, UI, OpenAPI -------------------------------------------------------------------


async def test_dev_login_issues_a_working_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/dev/login", json={"account_id": A, "user_id": "dev"})
    assert response.status_code == 200
    minted = response.json()["access_token"]
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {minted}"})
    assert me.json() == {"user_id": "dev", "account_id": A, "permissions": sorted(ALL)}
    page = await client.get("/dev/login", params={"account_id": A, "permission": "procore.publish"})
    assert page.status_code == 200
    assert '<script src="/static/dev-login.js">' in page.text
    assert "<script>" not in page.text
    assert "style=" not in page.text


async def test_dev_login_disabled_is_404(gw_kafka: str, gw_schema: str, gw_topics: Topics) -> None:
    app = build_app(settings_for(gw_kafka, gw_schema, gw_topics, dev_login=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http:
        assert (await http.post("/api/dev/login", json={"account_id": A, "user_id": "x"})).status_code == 404
        assert (await http.get("/dev/login", params={"account_id": A})).status_code == 404


async def test_dashboard_page_and_openapi(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert "/static/app.js" in page.text
    assert (await client.get("/static/app.js")).status_code == 200
    assert (await client.get("/static/app.css")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/api/modules/{module}/publish" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_labels_are_served_to_anyone_from_the_one_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/labels")
    assert response.status_code == 200
    assert "max-age" in response.headers["cache-control"]
    served = response.json()
    assert served["statuses"] == labels.STATUSES
    assert served["permissions"]["procore.mapping"] == "Procore Connect data mapping"
    assert served["entities"]["payroll_type"] == "Payroll types"


async def test_setup_says_what_is_missing(client: httpx.AsyncClient) -> None:
    setup = (await client.get("/api/setup", headers=auth())).json()
    # A new account: nothing chosen, not connected (this gateway's mapping service never started).
    assert setup["missing"] == ["connection", "company", "modules"]
    assert setup["manual_mappings"] == 0


async def test_a_conflict_says_what_to_do_and_offers_only_force_publish(client: httpx.AsyncClient) -> None:
    board = (
        await client.get(
            "/api/modules/manpower/dashboard",
            params={"week_start": (LATER - timedelta(days=3)).isoformat()},
            headers=auth(),
        )
    ).json()
    [annex] = board["rows"]
    thursday = annex["days"][3]
    assert (thursday["status"], thursday["conflicts"], thursday["actions"]) == ("failed", 1, ["force_publish"])
    details = (await client.get(f"/api/modules/manpower/cells/s2/{LATER.isoformat()}", headers=auth())).json()
    [row] = details["rows"]
    assert row["conflict"] is True
    assert row["advice"] == labels.CONFLICT_ADVICE
    assert row["actions"] == ["force_publish"]
    assert details["actions"] == ["force_publish"]
