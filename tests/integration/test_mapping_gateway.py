"""The gateway's Setup and Data mapping API over the mapping service's read model (real PostgreSQL, real broker).

The mapping schema gets its migrations and hand-written rows of two accounts; the gateway only
reads it. Commands are read back from mapping.commands.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from services.gateway.bootstrap import build_app as build_gateway
from shared import db
from shared.broker import ensure_topics
from shared.events import SetMapping, SyncProcoreEntities
from tests.support.kafka import eventually
from tests.support.mapping import auth, gateway_settings
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration

A, B, C = "acc-a", "acc-b", "acc-c"
DONE_COMMAND = uuid4()


async def seed(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        INSERT INTO company_bindings (procore_company_id, account_id, name, proof) VALUES
            (1, 'acc-a', 'A Builders', 'user_consent'),
            (2, 'acc-b', 'B Builders', 'customer_credentials');
        INSERT INTO setups (account_id, procore_company_id, enabled_modules, two_way) VALUES
            ('acc-a', 1, '{manpower,production_quantity,timecard}', false),
            ('acc-b', 2, '{manpower}', true);
        INSERT INTO reference_entities (account_id, kind, entity_id, name, number) VALUES
            ('acc-a', 'job_site', 's1', 'Tower site', 'P-100'),
            ('acc-a', 'job_site', 's2', 'Bridge site', NULL),
            ('acc-a', 'cost_code', 'cc1', 'Concrete', '03-300'),
            ('acc-b', 'job_site', 's9', 'B headquarters', 'B-1');
        INSERT INTO procore_entities (account_id, entity, procore_project_id, procore_id, name, number) VALUES
            ('acc-a', 'project', 0, 10, 'Tower A', 'P-100'),
            ('acc-a', 'project', 0, 11, 'Harbor Bridge', 'P-200'),
            ('acc-a', 'cost_code', 10, 300, 'Concrete', '03-300'),
            ('acc-b', 'project', 0, 90, 'B Project', 'B-1');
        INSERT INTO procore_entities (account_id, entity, procore_project_id, procore_id, name, number, gone) VALUES
            ('acc-a', 'project', 0, 12, 'Demolished', 'P-300', true);
        INSERT INTO mappings (account_id, entity, mobiclocks_id, procore_project_id, procore_id, source) VALUES
            ('acc-a', 'project', 's1', 0, 10, 'auto'),
            ('acc-b', 'project', 's9', 0, 90, 'two_way');
        INSERT INTO sync_runs (account_id, entity, procore_project_id, total, added, updated, gone) VALUES
            ('acc-a', 'project', 0, 3, 3, 0, 1);
        INSERT INTO automap_reports (account_id, entity, overwrite_manual, mapped, skipped, ambiguous, details) VALUES
            ('acc-a', 'project', false, 1, 1, 0, '[]');
        """
    )
    await conn.execute(
        "INSERT INTO command_outcomes (command_id, account_id, command_type, status, message)"
        " VALUES ($1, 'acc-a', 'mapping.sync', 'done', '3 projects synced')",
        DONE_COMMAND,
    )


@pytest.fixture
async def gateway(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> AsyncIterator[tuple[httpx.AsyncClient, StackConfig]]:
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    await db.migrate(cfg.dsn_of("mapping"), schemas["mapping"], "services.mapping.migrations")
    conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": schemas["mapping"]})
    try:
        await seed(conn)
    finally:
        await conn.close()
    app = build_gateway(gateway_settings(cfg))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http,
    ):
        yield http, cfg


async def command(cfg: StackConfig, command_id: str) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    async def probe() -> dict[str, Any] | None:
        consumer = AIOKafkaConsumer(
            cfg.topics.mapping_commands, bootstrap_servers=cfg.kafka, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=1000)
        finally:
            await consumer.stop()
        for records in batch.values():
            for r in records:
                body = json.loads(r.value)
                if body["event_id"] == command_id:
                    return dict(body)
        return None

    found = await eventually(probe, lambda c: c is not None, what=f"command {command_id}")
    assert found is not None
    return found


async def test_overview_and_tabs_follow_the_setup(gateway: tuple[httpx.AsyncClient, StackConfig]) -> None:
    http, _ = gateway
    a = (await http.get("/api/mapping", headers=auth(A))).json()
    assert [t["entity"] for t in a["tabs"]] == [
        "vendor",
        "project",
        "employee",
        "classification",
        "cost_code",
        "payroll_type",
    ]
    assert a["two_way"] is False
    assert a["mapped_projects"] == [{"procore_project_id": 10, "name": "Tower A"}]
    vendor = next(t for t in a["tabs"] if t["entity"] == "vendor")
    assert vendor["auto_map"] is False
    assert vendor["many_to_one"] is False
    cost_code = next(t for t in a["tabs"] if t["entity"] == "cost_code")
    assert cost_code["auto_map"]
    assert cost_code["number_field"] == "full_code"
    assert cost_code["needs_project"]
    b = (await http.get("/api/mapping", headers=auth(B))).json()
    assert [t["entity"] for t in b["tabs"]] == ["vendor", "project"]
    assert b["two_way"] is True
    assert "two-way" in b["message"]


async def test_project_tab_rows_options_sync_and_report(gateway: tuple[httpx.AsyncClient, StackConfig]) -> None:
    http, _ = gateway
    tab = (await http.get("/api/mapping/project", headers=auth(A))).json()
    rows = {r["mobiclocks_id"]: r for r in tab["rows"]}
    assert set(rows) == {"s1", "s2"}
    assert (rows["s1"]["procore_id"], rows["s1"]["procore_name"], rows["s1"]["source"]) == (10, "Tower A", "auto")
    assert rows["s2"]["procore_id"] is None
    assert [o["procore_id"] for o in tab["procore_options"]] == [11, 10]  # gone ones are not offered
    assert tab["last_sync"]["total"] == 3
    assert tab["last_auto_map"]["mapped"] == 1
    cost_codes = (await http.get("/api/mapping/cost_code", headers=auth(A))).json()
    assert cost_codes["procore_project_id"] == 10
    assert cost_codes["procore_options"][0]["number"] == "03-300"
    assert cost_codes["message"] is None
    assert [r["mobiclocks_id"] for r in cost_codes["rows"]] == ["cc1"]
    unmapped = await http.get("/api/mapping/cost_code?procore_project_id=11", headers=auth(A))
    assert unmapped.status_code == 404


async def test_cost_codes_show_nothing_until_a_project_is_mapped(
    gateway: tuple[httpx.AsyncClient, StackConfig],
) -> None:
    http, _ = gateway
    for entity in ("cost_code", "classification"):
        tab = (await http.get(f"/api/mapping/{entity}", headers=auth(C))).json()
        assert tab["rows"] == []
        assert "Map at least one project first" in tab["message"]


async def test_accounts_never_see_or_change_each_others_mappings(
    gateway: tuple[httpx.AsyncClient, StackConfig],
) -> None:
    http, cfg = gateway
    b_tab = (await http.get("/api/mapping/project", headers=auth(B))).json()
    assert [r["mobiclocks_id"] for r in b_tab["rows"]] == ["s9"]
    assert [o["procore_id"] for o in b_tab["procore_options"]] == [90]
    assert (await http.get(f"/api/commands/{DONE_COMMAND}", headers=auth(A))).json()["status"] == "done"
    assert (await http.get(f"/api/commands/{DONE_COMMAND}", headers=auth(B))).json()["status"] == "pending"
    # C mapping "s1" only ever names C's row: the command carries the token's account, whatever the body says.
    put = await http.put("/api/mappings/project/s1", json={"procore_id": 10, "account_id": A}, headers=auth(C))
    assert put.status_code == 202
    sent = SetMapping.model_validate(await command(cfg, put.json()["command_id"]))
    assert sent.account_id == C
    assert sent.requested_by == "u1"
    assert sent.permissions == ["procore.mapping", "procore.publish", "procore.setup"]


async def test_mapping_needs_the_mapping_permission(gateway: tuple[httpx.AsyncClient, StackConfig]) -> None:
    http, _ = gateway
    setup_only = auth(A, ["procore.setup", "procore.publish"])
    for method, path, body in (
        ("GET", "/api/mapping", None),
        ("GET", "/api/mapping/project", None),
        ("POST", "/api/mapping/project/sync", None),
        ("POST", "/api/mapping/project/auto-map", {}),
        ("PUT", "/api/mappings/project/s2", {"procore_id": 11}),
    ):
        response = await http.request(method, path, json=body, headers=setup_only)
        assert response.status_code == 403, (path, response.text)
        assert "Procore Connect data mapping" in response.json()["detail"]


async def test_two_way_accounts_get_409_for_manual_mapping_and_auto_map(
    gateway: tuple[httpx.AsyncClient, StackConfig],
) -> None:
    http, _ = gateway
    put = await http.put("/api/mappings/project/s9", json={"procore_id": 90}, headers=auth(B))
    assert put.status_code == 409
    assert "two-way" in put.json()["detail"]
    assert "linked" in put.json()["detail"]
    auto = await http.post("/api/mapping/project/auto-map", json={}, headers=auth(B))
    assert auto.status_code == 409


async def test_sync_and_auto_map_send_commands_with_the_requester(
    gateway: tuple[httpx.AsyncClient, StackConfig],
) -> None:
    http, cfg = gateway
    sync = await http.post("/api/mapping/vendor/sync", headers=auth(A, ["procore.mapping"]))
    assert sync.status_code == 202
    sent = SyncProcoreEntities.model_validate(await command(cfg, sync.json()["command_id"]))
    assert (sent.account_id, sent.entity.value, sent.permissions) == (A, "vendor", ["procore.mapping"])
    no_number = await http.post("/api/mapping/vendor/auto-map", json={}, headers=auth(A))
    assert no_number.status_code == 422
    assert "Number field" in no_number.json()["message"]
    auto = await http.post("/api/mapping/project/auto-map", json={"overwrite_manual": True}, headers=auth(A))
    assert auto.status_code == 202
    body = await command(cfg, auto.json()["command_id"])
    assert body["type"] == "mapping.auto_map"
    assert body["overwrite_manual"] is True
    assert UUID(auto.json()["command_id"])


async def test_dashboard_has_setup_and_data_mapping_screens(gateway: tuple[httpx.AsyncClient, StackConfig]) -> None:
    http, _ = gateway
    page = (await http.get("/")).text
    assert '<script type="module" src="/static/app.js">' in page
    assert "/static/mapping.js" in page
    for screen in ("mapping", "setup"):  # ES modules the entry point imports
        script = await http.get(f"/static/{screen}.js")
        assert script.status_code == 200
        assert "function show(params)" in script.text
        assert "export" in script.text
