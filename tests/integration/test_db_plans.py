"""A service connection prepares its statements again after `shared.db.REPLAN_AFTER_S`: a generic plan made while a
table was empty is not kept while the table grows."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared import db
from tests.support.database import ProvisionedDatabase

pytestmark = pytest.mark.integration

LOOKUP = "SELECT id FROM grows WHERE id = ANY($1::int[])"


async def plan_in_use(conn: asyncpg.Connection) -> str:
    """The plan the connection's prepared `LOOKUP` runs with now (EXPLAIN EXECUTE goes through its plan cache)."""
    name = await conn.fetchval(
        "SELECT name FROM pg_prepared_statements WHERE statement = $1 ORDER BY prepare_time DESC LIMIT 1", LOOKUP
    )
    rows = await conn.fetch(f"EXPLAIN EXECUTE {name}('{{1,2,3}}')")
    return "\n".join(r[0] for r in rows)


async def test_a_plan_made_on_an_empty_table_is_replaced_once_the_statement_is_prepared_again(
    database: ProvisionedDatabase,
) -> None:
    replan_after_s = 1.0
    pool = await db.create_pool(
        database.dsn("aggregator"), database.schema("aggregator"), max_size=1, replan_after_s=replan_after_s
    )
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE grows (id int PRIMARY KEY, padding char(500))")
            for _ in range(10):
                assert await conn.fetch(LOOKUP, [1, 2, 3]) == []
            await conn.execute("INSERT INTO grows SELECT i, 'x' FROM generate_series(1, 20000) AS i")

            assert [r["id"] for r in await conn.fetch(LOOKUP, [1, 2, 3])] == [1, 2, 3]
            stale = await plan_in_use(conn)
            assert "Seq Scan" in stale, f"PostgreSQL no longer keeps the empty table's plan:\n{stale}"

            await asyncio.sleep(replan_after_s * 1.5)
            for _ in range(10):
                assert [r["id"] for r in await conn.fetch(LOOKUP, [1, 2, 3])] == [1, 2, 3]
            fresh = await plan_in_use(conn)
            assert "Seq Scan" not in fresh, fresh
            assert "grows_pkey" in fresh, fresh
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DROP TABLE IF EXISTS grows")
        await pool.close()
