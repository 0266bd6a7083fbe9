"""Week views served from memory end only when the aggregator says their entries changed: a status change committed
in PostgreSQL (its NOTIFY trigger, migration 007) reaches the next week view at once, not after the cache's TTL."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest

from services.gateway.bootstrap import build_app
from services.gateway.config import GatewaySettings
from services.gateway.tokens import Principal, issue_dev_token
from tests.support.database import ProvisionedDatabase, migrated

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret-0123456789-abcdef"
MON = date(2026, 11, 23)


def auth(account: str) -> dict[str, str]:
    who = Principal("u1", account, frozenset({"procore.publish"}))
    return {"Authorization": f"Bearer {issue_dev_token(who, SECRET, 3600)}"}


async def status_of(http: httpx.AsyncClient, account: str) -> Any:
    board = (
        await http.get("/api/modules/timecard/dashboard", params={"week_start": MON.isoformat()}, headers=auth(account))
    ).json()
    return board["rows"][0]["days"][1]["status"]


async def name_of(http: httpx.AsyncClient, account: str) -> Any:
    params = {"week_start": MON.isoformat()}
    board = (await http.get("/api/modules/timecard/dashboard", params=params, headers=auth(account))).json()
    return board["rows"][0]["job_site"]["name"]


async def test_a_changed_entry_reaches_the_next_week_view_through_the_cache(
    kafka_bootstrap: str, database: ProvisionedDatabase
) -> None:
    await migrated(database, "aggregator", "mapping")
    schema = database.schema("aggregator")
    admin = await asyncpg.connect(database.admin)
    entry_id = uuid.uuid4()
    try:
        await admin.execute(
            f"""INSERT INTO "{schema}".entries (entry_id, account_id, module, job_site_id, work_date, entry_key, dims,
                                               content, status)
                VALUES ($1, 'acc', 'timecard', 's1', $2, 'k1', '{{}}', $3, 'todo')""",
            entry_id,
            date(2026, 11, 24),
            json.dumps({"hours": "8.00"}),
        )
        settings = GatewaySettings(
            kafka_bootstrap_servers=kafka_bootstrap,
            database_url=database.dsn("gateway"),
            topic_prefix=f"wc{uuid.uuid4().hex[:6]}.",
            environment="development",
            jwt_secret=SECRET,
            aggregator_schema=schema,
            mapping_schema=database.schema("mapping"),
            week_cache_ttl_s=300,
        )
        app = build_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as http,
        ):
            await app.state.live.wait_listening(10)
            cache = app.state.week_cache
            assert await status_of(http, "acc") == "todo"
            hits = cache.hits
            assert await status_of(http, "acc") == "todo"
            assert cache.hits == hits + 1

            await admin.execute(f'UPDATE "{schema}".entries SET status = $2 WHERE entry_id = $1', entry_id, "failed")
            async with asyncio.timeout(10):  # the TTL is 300 s: only the notification can end the cached view
                while await status_of(http, "acc") != "failed":  # noqa: ASYNC110 (polling over HTTP)
                    await asyncio.sleep(0.05)
            # A job site named (then renamed) changes the grid without any entry changing: the aggregator's trigger
            # on reference_names (migration 010) says so, and the cached week goes.
            assert await name_of(http, "acc") == "s1"
            upsert = (
                f'INSERT INTO "{schema}".reference_names (account_id, kind, entity_id, name) VALUES ($1, $2, $3, $4)'
                " ON CONFLICT (account_id, kind, entity_id) DO UPDATE SET name = EXCLUDED.name"
            )
            for name in ("Tower A", "Tower B"):
                await admin.execute(upsert, "acc", "job_site", "s1", name)
                async with asyncio.timeout(10):
                    while await name_of(http, "acc") != name:  # noqa: ASYNC110 (polling over HTTP)
                        await asyncio.sleep(0.05)
            other = await http.get(
                "/api/modules/timecard/dashboard", params={"week_start": MON.isoformat()}, headers=auth("other")
            )
            assert other.json()["rows"] == []  # the key holds the account: never another account's view
    finally:
        await admin.close()
