"""What the security tests compare: every row of some schemas (or one account's rows), and every record a topic
holds, so "nothing changed, nothing emitted" is checked, not assumed."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import asyncpg

from tests.support.mapping import records_on_topic

Snapshot = dict[str, list[str]]


async def snapshot(dsn: str, schemas: Iterable[str], account: str | None = None, skip: Iterable[str] = ()) -> Snapshot:
    """Every row of every table of `schemas` ("schema.table" → sorted JSON rows); with `account`, only the rows of
    tables with an account_id column that belong to it (and the history of its entries)."""
    out: Snapshot = {}
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            for schema in schemas:
                tables = await conn.fetch(
                    "SELECT table_name, bool_or(column_name = 'account_id') AS by_account"
                    " FROM information_schema.columns WHERE table_schema = $1 GROUP BY table_name",
                    schema,
                )
                for t in tables:
                    name = f"{schema}.{t['table_name']}"
                    if t["table_name"] in skip:
                        continue
                    sql = f'SELECT to_jsonb(x)::text AS row FROM "{schema}"."{t["table_name"]}" x'
                    args: list[Any] = []
                    if account is not None:
                        if t["by_account"]:
                            sql += " WHERE account_id = $1"
                        elif t["table_name"] == "publish_history":
                            sql += f' WHERE entry_id IN (SELECT entry_id FROM "{schema}".entries WHERE account_id = $1)'
                        else:
                            continue
                        args.append(account)
                    out[name] = sorted(r["row"] for r in await conn.fetch(sql, *args))
    finally:
        await conn.close()
    return out


async def topic_records(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record the topic holds now (JSON values), whichever partition."""
    return [json.loads(r.value) for r in await records_on_topic(bootstrap, topic)]
