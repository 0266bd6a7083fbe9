"""What the live-update triggers (aggregator migration 007) cost the aggregator's writes.

    python -m tests.bench.live_notify_bench --entries 200000 --batch 500 --rounds 40

Migrates a fresh aggregator schema (its own role, as in production), fills `entries`, then times the same batched
UPDATE and INSERT statements with the statement-level NOTIFY triggers enabled and disabled, alternating rounds so
the machine's noise falls on both. Prints numbers; asserts nothing about time. Uses DATABASE_URL (administrator).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
import uuid
from datetime import date
from typing import Annotated

import asyncpg
import typer

from shared import db
from tests.support.database import migrated, provisioned

DSN = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
DAY = date(2026, 11, 23)


async def fill(conn: asyncpg.Connection, entries: int, accounts: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(entries)]
    await conn.execute(
        "INSERT INTO entries (entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content, status)"
        " SELECT i, 'acc-' || (n % $2), 'manpower', 's' || (n % 50), $3::date + (n % 60)::int, i::text,"
        '        \'{"company_id": "c1", "crew_tag": "A"}\'::jsonb,'
        '        \'{"manpower": "1", "total_hours": "8.00", "average_hours": "8.00"}\'::jsonb, \'todo\''
        "   FROM unnest($1::uuid[]) WITH ORDINALITY AS u(i, n)",
        ids,
        accounts,
        DAY,
    )
    return ids


async def timed(conn: asyncpg.Connection, sql: str, *args: object) -> float:
    started = time.perf_counter()
    async with conn.transaction():
        await conn.execute(sql, *args)
    return time.perf_counter() - started


async def run(entries: int, batch: int, rounds: int, accounts: int) -> None:
    async with provisioned(DSN, f"bench_live_{secrets.token_hex(3)}_") as database:
        await migrated(database, "aggregator")
        schema = database.schema("aggregator")
        conn = await asyncpg.connect(database.dsn("aggregator"), server_settings={"search_path": schema})
        listener = await asyncpg.connect(database.dsn("gateway"))
        heard = 0

        def count(*_: object) -> None:
            nonlocal heard
            heard += 1

        await listener.add_listener(f"{schema}.entries", count)
        try:
            await db._init_connection(conn)
            ids = await fill(conn, entries, accounts)
            await conn.execute("ANALYZE entries")
            update = "UPDATE entries SET status = $2, version = version + 1 WHERE entry_id = ANY($1::uuid[])"
            timings: dict[str, list[float]] = {
                "update, triggers on": [],
                "update, triggers off": [],
                "insert, triggers on": [],
                "insert, triggers off": [],
            }
            for r in range(rounds):
                chosen = [ids[(r * batch + k * 7919) % len(ids)] for k in range(batch)]
                for on in (r % 2 == 0, r % 2 == 1):
                    await conn.execute(f"ALTER TABLE entries {'ENABLE' if on else 'DISABLE'} TRIGGER USER")
                    label = "on" if on else "off"
                    status = "publishing" if on else "todo"
                    timings[f"update, triggers {label}"].append(await timed(conn, update, chosen, status))
                    new = [uuid.uuid4() for _ in range(batch)]
                    started = time.perf_counter()
                    async with conn.transaction():
                        await conn.execute(
                            "INSERT INTO entries (entry_id, account_id, module, job_site_id, work_date, entry_key,"
                            " dims, status)"
                            " SELECT i, 'acc-' || (n % $2), 'manpower', 's1', $3::date, i::text, '{}'::jsonb, 'todo'"
                            "   FROM unnest($1::uuid[]) WITH ORDINALITY AS u(i, n)",
                            new,
                            accounts,
                            DAY,
                        )
                    timings[f"insert, triggers {label}"].append(time.perf_counter() - started)
            await asyncio.sleep(0.5)
            print(f"entries={entries} batch={batch} rounds={rounds} accounts={accounts} notifications_heard={heard}")
            for name, values in timings.items():
                print(f"{name:24s} median {statistics.median(values) * 1000:7.2f} ms per {batch}-row statement")
        finally:
            await listener.close()
            await conn.close()


def main(
    entries: Annotated[int, typer.Option()] = 200_000,
    batch: Annotated[int, typer.Option()] = 500,
    rounds: Annotated[int, typer.Option()] = 40,
    accounts: Annotated[int, typer.Option()] = 20,
) -> None:
    asyncio.run(run(entries, batch, rounds, accounts))


if __name__ == "__main__":
    typer.run(main)
