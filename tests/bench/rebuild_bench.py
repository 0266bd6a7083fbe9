"""Rebuild benchmark: `python -m services.aggregator rebuild` over many stored timelogs.

    python -m tests.bench.rebuild_bench --stored 1000000

Stores `stored` timelogs (generated in SQL, shaped like the benchmark stream: 50 accounts, 10 job sites,
40 employees in 4 companies x 2 crews, 30 cost codes, 30 % with a quantity, one timelog per employee and
day) in a provisioned schema of `DATABASE_URL`, then runs the real command twice as a subprocess: first
with no entries (every entry created), then again over the entries it built (a reconcile: nothing to
write). Prints the wall time of each, the timelogs/s, and the CPU seconds the rebuild's own processes and
PostgreSQL's backends used (Linux /proc, PostgreSQL on this machine); asserts nothing about time.
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from shared import db
from shared.provision import Layout
from tests.bench.cpu import ended_children_cpu_seconds, machine_busy_seconds, parent_of
from tests.support.database import drop_layout, provision_layout, role_dsn

ROOT = Path(__file__).resolve().parents[2]
cli = typer.Typer(add_completion=False)

ACCOUNTS = 50
EMPLOYEES = 40

TIMELOGS_SQL = """
INSERT INTO timelogs (account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag, job_site_id,
                      work_date, seconds, cost_code_id, pay_class_id, pay_id, quantities)
SELECT 'rb-' || lpad((i % $3)::text, 3, '0'), 'tl-' || i, 1, false, 'emp-' || e, 'co-' || (e % 4),
       'crew-' || ((e / 4) % 2), 'site-' || ((e * 7 + d) % 10), DATE '2020-01-01' + d, 3600 * (4 + (i % 6)),
       'cc-' || ((e + d) % 30), CASE WHEN i % 10 = 0 THEN 'pc-1' END, CASE WHEN i % 7 = 0 THEN 'OT' ELSE 'REG' END,
       CASE WHEN i % 10 < 3 THEN jsonb_build_array(jsonb_build_array('cc-' || ((e + d) % 30), 'm3', (1 + i % 20)::text))
            ELSE '[]'::jsonb END
  FROM generate_series($1::bigint, $2::bigint) AS i,
       LATERAL (SELECT ((i / $3) % $4)::int AS e, (i / ($3 * $4))::int AS d) k
"""


@cli.command()
def main(
    stored: Annotated[int, typer.Option(help="Timelogs to store and rebuild from.")] = 1_000_000,
    workers: Annotated[int, typer.Option(help="`rebuild --workers`.")] = 2,
    processes: Annotated[int, typer.Option(help="`rebuild --processes`.")] = os.cpu_count() or 1,
    chunk: Annotated[int, typer.Option(help="`rebuild --chunk`.")] = 2000,
    profile: Annotated[str | None, typer.Option(help="cProfile the first rebuild into this file.")] = None,
) -> None:
    admin = os.environ["DATABASE_URL"]
    layout = Layout(f"rb_{secrets.token_hex(3)}_")
    schema = layout.schema("aggregator")
    dsn = role_dsn(admin, layout.role("aggregator"))

    async def prepare() -> None:
        await provision_layout(admin, layout)
        await db.migrate(dsn, schema, "services.aggregator.migrations")
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            t0 = time.perf_counter()
            await conn.execute(
                "INSERT INTO setups (account_id, procore_company_id, enabled_modules) SELECT 'rb-' ||"
                " lpad(a::text, 3, '0'), 1000 + a, ARRAY['manpower', 'production_quantity', 'timecard']"
                " FROM generate_series(0, $1 - 1) a",
                ACCOUNTS,
            )
            step = 500_000
            for start in range(0, stored, step):
                await conn.execute(TIMELOGS_SQL, start, min(start + step, stored) - 1, ACCOUNTS, EMPLOYEES)
            await conn.execute("ANALYZE timelogs; ANALYZE entries; ANALYZE entry_members")  # this schema only
            print(f"stored {stored} timelogs in {time.perf_counter() - t0:.0f}s", flush=True)
        finally:
            await conn.close()

    async def entries() -> int:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            return int(await conn.fetchval("SELECT count(*) FROM entries"))
        finally:
            await conn.close()

    async def postmaster() -> int:
        conn = await asyncpg.connect(admin)
        try:
            return parent_of(int(await conn.fetchval("SELECT pg_backend_pid()")))
        finally:
            await conn.close()

    def own_children_cpu() -> float:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return used.ru_utime + used.ru_stime

    def rebuild(label: str, profile: str | None = None) -> float:
        env = {**os.environ, "DATABASE_URL": dsn, "DB_SCHEMA": schema, "LOG_LEVEL": "WARNING"}
        env.setdefault("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # rebuild never connects to the broker
        python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
        command = [*python, "-m", "services.aggregator", "rebuild", "--workers", str(workers)]
        command += ["--processes", str(processes)]
        pg = asyncio.run(postmaster())
        cpu = (own_children_cpu(), ended_children_cpu_seconds(pg), machine_busy_seconds())
        t0 = time.perf_counter()
        subprocess.run([*command, "--chunk", str(chunk)], cwd=ROOT, env=env, check=True)
        took = time.perf_counter() - t0
        # the rebuild's connections have ended by now: their backends' CPU is the postmaster's children's
        python_s, postgres_s = own_children_cpu() - cpu[0], ended_children_cpu_seconds(pg) - cpu[1]
        print(
            f"{label}: stored={stored} seconds={took:.0f} timelogs_per_s={stored / took:.0f} "
            f"entries={asyncio.run(entries())} load={os.getloadavg()[0]:.1f} cpu_rebuild_s={python_s:.0f} "
            f"cpu_postgres_s={postgres_s:.0f} cpu_machine_s={machine_busy_seconds() - cpu[2]:.0f} "
            f"cpu_us_per_timelog={(python_s + postgres_s) / stored * 1e6:.0f}",
            flush=True,
        )
        return took

    try:
        asyncio.run(prepare())
        rebuild("rebuild_from_empty", profile)
        rebuild("rebuild_unchanged")
    finally:
        asyncio.run(drop_layout(admin, layout))


if __name__ == "__main__":
    cli()
