"""In-process profile of the aggregator's batch apply, no broker: the same stream, the same batches.

    python -m tests.bench.aggregator_inprocess --events 50000 --batch 2000 [--profile out.prof]

Applies the generated stream with `handlers.apply_timelog_events` (what the consumer calls per batch) and the
ceiling's set-based applier on the same stream, in one run, on a provisioned schema of `DATABASE_URL`; prints
both rates, and with --profile writes a cProfile of the aggregator's part. Asserts nothing about time.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import os
import secrets
import time
from typing import Annotated, Any

import asyncpg
import typer

from services.aggregator import handlers
from services.aggregator.adapters.store import Store
from shared import db
from shared.provision import Layout
from tests.bench import ceiling
from tests.bench.generator import Generator, Shape
from tests.support.database import drop_layout, provision_layout, role_dsn
from tests.support.entries import entry_rows, mismatches

cli = typer.Typer(add_completion=False)


BY_STATEMENT: dict[str, float] = {}


def _time_statements() -> list[float]:
    """Add up the time this process sat idle awaiting asyncpg statements: the await's wall time less the CPU the
    process spent meanwhile (a statement sent ahead runs while the apply goes on computing: that part is not
    waiting)."""
    total = [0.0]
    for name in ("fetch", "execute", "fetchval", "fetchrow"):
        original = getattr(asyncpg.Connection, name)

        def timed(original: Any = original) -> Any:
            async def call(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> Any:
                t0, cpu0 = time.perf_counter(), time.process_time()
                try:
                    return await original(self, *args, **kwargs)
                finally:
                    idle = max(0.0, (time.perf_counter() - t0) - (time.process_time() - cpu0))
                    total[0] += idle
                    what = " ".join(str(args[0]).split())[:70] if args else "?"
                    BY_STATEMENT[what] = BY_STATEMENT.get(what, 0.0) + idle

            return call

        setattr(asyncpg.Connection, name, timed())
    return total


@cli.command()
def main(
    events: Annotated[int, typer.Option()] = 50_000,
    batch: Annotated[int, typer.Option()] = 2000,
    profile: Annotated[str | None, typer.Option(help="Write a cProfile of the aggregator's apply here.")] = None,
    verify: bool = True,
    gc_threshold: Annotated[int, typer.Option(help="gc.set_threshold(N) for the run (0: Python's default).")] = 0,
) -> None:
    if gc_threshold:
        gc.set_threshold(gc_threshold, 50, 100)
    waited = _time_statements()

    async def run() -> None:
        admin = os.environ["DATABASE_URL"]
        layout = Layout(f"prof_{secrets.token_hex(3)}_")
        schema = layout.schema("aggregator")
        await provision_layout(admin, layout)
        try:
            dsn = role_dsn(admin, layout.role("aggregator"))
            await db.migrate(dsn, schema, "services.aggregator.migrations")
            pool = await db.create_pool(dsn, schema, max_size=2)
            gen = Generator(Shape(), seed=3)
            async with pool.acquire() as conn:
                for setup in gen.setups():
                    async with conn.transaction():
                        await handlers.apply_mapping_change(Store(conn), setup)
            stream = list(gen.events(events))
            profiler = cProfile.Profile() if profile else None
            t0, cpu0 = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            for start in range(0, len(stream), batch):
                async with pool.acquire() as conn, conn.transaction():
                    await handlers.apply_timelog_events(Store(conn), stream[start : start + batch])
            if profiler and profile:
                profiler.disable()
                profiler.dump_stats(profile)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            ours = len(stream) / elapsed
            print(f"aggregator: {elapsed:.1f}s, of which {waited[0]:.1f}s idle, waiting for PostgreSQL")
            print(f"aggregator_cpu_s={cpu:.2f} cpu_us_per_event={cpu / len(stream) * 1e6:.0f}")
            for what, took in sorted(BY_STATEMENT.items(), key=lambda kv: -kv[1])[:8]:
                print(f"  {took:6.2f}s  {what}")
            async with pool.acquire() as conn:
                await ceiling.prepare(conn)
                result = await ceiling.run(conn, stream, batch)
            await pool.close()
            line = f"aggregator_events_per_s={ours:.0f} ceiling_events_per_s={result.events_per_s:.0f}"
            print(f"{line} ratio={ours / result.events_per_s:.2f}")
            if verify:
                problems = mismatches(await entry_rows(admin, schema), gen.live.values())
                print(f"mismatches={len(problems)}")
                conn = await asyncpg.connect(admin, server_settings={"search_path": schema})
                try:
                    stored = await conn.fetchval("SELECT count(*) FROM entries")
                    ceiling_count = await conn.fetchval("SELECT count(*) FROM ceiling_entries")
                finally:
                    await conn.close()
                print(f"entries={stored} ceiling_entries={ceiling_count}")
        finally:
            await drop_layout(admin, layout)

    asyncio.run(run())


if __name__ == "__main__":
    cli()
