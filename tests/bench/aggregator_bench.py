"""Aggregator benchmark: one aggregator process, the real broker, real PostgreSQL.

    python -m tests.bench.aggregator_bench throughput --events 100000 [--stored 1000000] [--processes 2]
    python -m tests.bench.aggregator_bench ceiling --events 100000 --stored 1000000
    python -m tests.bench.aggregator_bench scaling --events 100000 --processes 2
    python -m tests.bench.aggregator_bench latency --rate 1000 --seconds 30
    python -m tests.bench.aggregator_bench scale --stored 1000000 --events 100000
    python -m tests.bench.aggregator_bench remap --codes 1000

`throughput` also runs the ceiling (`tests/bench/ceiling.py`: the same stream applied set-based, no broker,
no status machine) on the same database with the same stored timelogs, and prints our figure, the ceiling's
and the ratio. `scaling` runs the same stream through 1 and then N aggregator processes and compares the
entries they leave.

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, otherwise starts a local broker and an
embedded PostgreSQL. Every run uses its own topic prefix and schema and drops the schema at the
end (unless --keep). Prints numbers; it asserts nothing about time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devstack.broker import LocalBroker
from devstack.ports import free_port
from devstack.postgres import LocalPostgres
from services.aggregator.domain import EntryRef, entry_id
from shared import db
from shared.broker import ensure_topics
from shared.events import Module, SetupChanged, TimelogUpserted
from shared.provision import Layout
from shared.topics import Topics
from tests.bench import ceiling
from tests.bench.aggregator_remap import RemapWorkload, other_setups, other_timelogs
from tests.bench.cpu import cpu_seconds
from tests.bench.generator import Generator, Shape
from tests.support.database import drop_layout, layout_of, provision_layout, role_dsn
from tests.support.entries import entry_rows, mismatches

ROOT = Path(__file__).resolve().parents[2]
cli = typer.Typer(add_completion=False)


@dataclass
class Run:
    kafka: str
    dsn: str
    """The administrator's: it provisions and reads; the aggregator runs as its own role (`service_dsn`)."""
    prefix: str
    schema: str
    """`<name>_aggregator`: provisioned with the layout `<name>_`."""

    @property
    def layout(self) -> Layout:
        return layout_of({"aggregator": self.schema})

    @property
    def service_dsn(self) -> str:
        return role_dsn(self.dsn, self.layout.role("aggregator"))

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def group(self) -> str:
        return f"{self.prefix}aggregator"


@contextlib.contextmanager
def infrastructure() -> Iterator[tuple[str, str]]:
    with contextlib.ExitStack() as stack:
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or stack.enter_context(LocalBroker()).bootstrap_servers
        dsn = os.environ.get("DATABASE_URL") or stack.enter_context(LocalPostgres()).dsn
        yield kafka, dsn


@contextlib.asynccontextmanager
async def aggregators(run: Run, batch: int, processes: int) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(aggregator(run, batch)) for _ in range(processes)]


@contextlib.asynccontextmanager
async def aggregator(run: Run, batch: int, root: Path = ROOT) -> AsyncIterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": run.kafka,
        "DATABASE_URL": run.service_dsn,
        "TOPIC_PREFIX": run.prefix,
        "DB_SCHEMA": run.schema,
        "HTTP_PORT": str(free_port()),
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "BATCH_MAX_RECORDS": str(batch),
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "services.aggregator"], cwd=root, env=env)  # noqa: ASYNC220
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


async def produce(kafka: str, topic: str, events: list[bytes], keys: list[bytes]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    t0 = time.perf_counter()
    try:
        futures = [await producer.send(topic, value, key=key) for value, key in zip(events, keys, strict=True)]
        await producer.flush()
        for f in futures:
            await f
    finally:
        await producer.stop()
    return len(events) / (time.perf_counter() - t0)


async def committed(kafka: str, topic: str, group: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum([await consumer.committed(tp) or 0 for tp in parts])
    finally:
        await consumer.stop()


async def wait_consumed(run: Run, total: int, timeout_s: float) -> tuple[float, float]:
    """(time of the first commit, time all `total` records were committed)."""
    first = None
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        done = await committed(run.kafka, run.topics.timelogs, run.group)
        now = time.perf_counter()
        if done > 0 and first is None:
            first = now
        if done >= total:
            return first or now, now
        await asyncio.sleep(0.2)
    raise SystemExit(f"not consumed within {timeout_s}s")


def encode(events: Sequence[object], exclude_none: bool = False) -> tuple[list[bytes], list[bytes]]:
    """`exclude_none`: leave out optional fields not set (what an aggregator from before they existed accepts)."""
    values, keys = [], []
    for e in events:
        values.append(e.model_dump_json(exclude_none=exclude_none).encode())  # type: ignore[attr-defined]
        keys.append(f"{e.account_id}:{getattr(e, 'job_site_id', '')}".encode())  # type: ignore[attr-defined]
    return values, keys


async def prepare(run: Run, gen: Generator) -> None:
    await provision_layout(run.dsn, run.layout)
    await db.migrate(run.service_dsn, run.schema, "services.aggregator.migrations")
    await ensure_topics(run.kafka, run.topics.all())
    values, keys = encode(list(gen.setups()))
    await produce(run.kafka, run.topics.mapping_changes, values, keys)


async def setups_applied(run: Run) -> int:
    conn = await asyncpg.connect(run.dsn)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{run.schema}".setups') or 0)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def measure_throughput(
    run: Run, gen: Generator, events: int, batch: int, verify: bool, processes: int = 1
) -> dict[str, float]:
    stream: list[object] = list(gen.events(events))  # what encode takes
    values, keys = encode(stream)
    async with aggregators(run, batch, processes) as procs:
        # setups first (another consumer group), so the timelog backlog is measured on its own
        while await setups_applied(run) < gen.shape.accounts:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.2)
        cpu_before = cpu_seconds([p.pid for p in procs])
        produced = await produce(run.kafka, run.topics.timelogs, values, keys)
        first, last = await wait_consumed(run, len(values), timeout_s=3600)
        cpu = cpu_seconds([p.pid for p in procs]) - cpu_before
    result = {"events": float(len(values)), "produce_per_s": produced, "events_per_s": len(values) / (last - first)}
    # less sensitive to the shared machine's other load than events/s: the aggregators' own CPU per event
    result["aggregator_cpu_us_per_event"] = cpu / len(values) * 1e6
    if verify:
        rows = await entry_rows(run.dsn, run.schema)
        for preloaded in [k for k, r in rows.items() if r["account_id"].startswith("pre-")]:
            del rows[preloaded]  # the stored timelogs' entries (see `preload`) are not the stream's
        problems = mismatches(rows, gen.live.values())
        result["mismatches"] = float(len(problems))
    return result


@cli.command()
def throughput(
    events: Annotated[int, typer.Option(help="Timelog events to apply.")] = 100_000,
    batch: Annotated[int, typer.Option(help="BATCH_MAX_RECORDS of the aggregator.")] = 2000,
    verify: Annotated[bool, typer.Option(help="Compare the entries with a from-scratch recompute.")] = True,
    stored: Annotated[int, typer.Option(help="Timelogs (and entries) stored before the stream.")] = 1_000_000,
    ceiling_run: Annotated[bool, typer.Option("--ceiling/--no-ceiling", help="Also run the ceiling.")] = True,
    ceiling_batch: Annotated[int, typer.Option(help="Events per batch of the ceiling.")] = 1000,
    processes: Annotated[int, typer.Option(help="Aggregator processes (one consumer group).")] = 1,
    keep: bool = False,
) -> None:
    """Sustained events/s of the aggregator (a backlog consumed from the broker), and the ceiling's."""

    async def main(kafka: str, dsn: str) -> None:
        run = Run(kafka, dsn, f"bench{secrets.token_hex(3)}.", f"bench_{secrets.token_hex(3)}_aggregator")
        gen = Generator(Shape(), seed=3)
        try:
            await prepare(run, gen)
            await preload(run, stored, with_ceiling=ceiling_run)
            result = await measure_throughput(run, gen, events, batch, verify, processes)
            print(" ".join(f"{k}={v:.0f}" for k, v in result.items()), flush=True)
            if ceiling_run:
                limit = await measure_ceiling(run, Generator(Shape(), seed=3), events, ceiling_batch)
                ratio = result["events_per_s"] / limit.events_per_s
                print(
                    f"ceiling_events_per_s={limit.events_per_s:.0f} ceiling_p99_batch={limit.p99_batch_ms:.0f}ms "
                    f"ratio={ratio:.2f} stored={stored} processes={processes} load={os.getloadavg()[0]:.1f}"
                )
        finally:
            if not keep:
                await drop_layout(dsn, run.layout)

    with infrastructure() as (kafka, dsn):
        asyncio.run(main(kafka, dsn))


@cli.command(name="ceiling")
def ceiling_command(
    events: Annotated[int, typer.Option(help="Timelog events to apply.")] = 100_000,
    stored: Annotated[int, typer.Option(help="Timelogs (and entries) stored before the stream.")] = 1_000_000,
    batch: Annotated[int, typer.Option(help="Events per batch.")] = 1000,
) -> None:
    """The database's ceiling alone: the stream applied set-based (no broker, no status machine)."""

    async def main(kafka: str, dsn: str) -> None:
        run = Run(kafka, dsn, f"ceil{secrets.token_hex(3)}.", f"ceil_{secrets.token_hex(3)}_aggregator")
        try:
            await provision_layout(run.dsn, run.layout)
            await db.migrate(run.service_dsn, run.schema, "services.aggregator.migrations")
            await preload(run, stored, with_ceiling=True)
            limit = await measure_ceiling(run, Generator(Shape(), seed=3), events, batch)
            print(f"ceiling_events_per_s={limit.events_per_s:.0f} p99_batch={limit.p99_batch_ms:.0f}ms")
        finally:
            await drop_layout(dsn, run.layout)

    with infrastructure() as (kafka, dsn):
        asyncio.run(main(kafka, dsn))


@cli.command()
def scaling(
    events: Annotated[int, typer.Option(help="Timelog events to apply.")] = 100_000,
    processes: Annotated[int, typer.Option(help="Aggregator processes of the second run.")] = 2,
    batch: Annotated[int, typer.Option(help="BATCH_MAX_RECORDS of each aggregator.")] = 2000,
    stored: Annotated[int, typer.Option(help="Timelogs (and entries) stored before the stream.")] = 0,
) -> None:
    """The same stream through 1 and then N aggregator processes: events/s of each, and whether they agree."""

    async def main(kafka: str, dsn: str) -> None:
        rates: dict[int, float] = {}
        entries: dict[int, dict[uuid.UUID, tuple[object, ...]]] = {}
        for n in (1, processes):
            run = Run(kafka, dsn, f"scl{secrets.token_hex(3)}.", f"scl_{secrets.token_hex(3)}_aggregator")
            gen = Generator(Shape(), seed=3)
            try:
                await prepare(run, gen)
                await preload(run, stored, with_ceiling=False)
                result = await measure_throughput(run, gen, events, batch, verify=True, processes=n)
                rows = await entry_rows(dsn, run.schema)
                entries[n] = {
                    # not the version: it counts the batches that changed an entry, and batches are cut differently
                    k: (r["content"], r["status"], r["errors"], r["seconds"], r["units"], r["members"])
                    for k, r in rows.items()
                }
                rates[n] = result["events_per_s"]
                print(" ".join(f"{k}={v:.0f}" for k, v in result.items()) + f" processes={n}", flush=True)
            finally:
                await drop_layout(dsn, run.layout)
        same = entries[1] == entries[processes]
        print(
            f"speedup={rates[processes] / rates[1]:.2f} processes={processes} identical={same} "
            f"entries={len(entries[1])} load={os.getloadavg()[0]:.1f}"
        )

    with infrastructure() as (kafka, dsn):
        asyncio.run(main(kafka, dsn))


async def preload(run: Run, stored: int, with_ceiling: bool) -> None:
    """`stored` timelogs of 500 other accounts and their timecard entries; the same copied for the ceiling."""
    conn = await asyncpg.connect(run.dsn, server_settings={"search_path": run.schema})
    try:
        t0 = time.perf_counter()
        step = 500_000
        for start in range(0, stored, step):
            await conn.execute(PRELOAD_SQL, start, min(start + step, stored) - 1)
        accounts = [f"pre-{a}" for a in range(500)]
        if stored:
            for i in range(0, len(accounts), 50):
                await conn.execute(PRELOAD_ENTRIES_SQL, accounts[i : i + 50])
        if with_ceiling:
            await ceiling.prepare(conn)
            if stored:
                await ceiling.copy_preloaded(conn, accounts)
        await conn.execute("ANALYZE timelogs; ANALYZE entries; ANALYZE entry_members")  # this schema only
        if stored:
            size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
            print(f"preloaded {stored} timelogs in {time.perf_counter() - t0:.0f}s (database {size})", flush=True)
    finally:
        await conn.close()


async def measure_ceiling(run: Run, gen: Generator, events: int, batch: int) -> ceiling.CeilingResult:
    stream = list(gen.events(events))
    conn = await asyncpg.connect(run.dsn, server_settings={"search_path": run.schema})
    try:
        return await ceiling.run(conn, stream, batch)
    finally:
        await conn.close()


@cli.command()
def latency(
    rate: Annotated[int, typer.Option(help="Events per second produced.")] = 1000,
    seconds: Annotated[int, typer.Option(help="How long to produce.")] = 30,
    probe_share: Annotated[float, typer.Option(help="Share of events that are probes.")] = 0.1,
    batch: int = 2000,
) -> None:
    """p50/p99 from produce to the entry being visible to a reader polling PostgreSQL every 5 ms."""

    async def main(kafka: str, dsn: str) -> None:
        run = Run(kafka, dsn, f"lat{secrets.token_hex(3)}.", f"lat_{secrets.token_hex(3)}_aggregator")
        gen = Generator(Shape(), seed=5)
        background = gen.events(rate * seconds)
        await prepare(run, gen)
        setup = SetupChanged(account_id="probe", procore_company_id=1, enabled_modules=list(Module), two_way=False)
        values, keys = encode([setup])
        await produce(run.kafka, run.topics.mapping_changes, values, keys)
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        try:
            async with aggregator(run, batch):
                producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=0)
                await producer.start()
                stop = asyncio.Event()
                poller = asyncio.create_task(poll_visible(run, sent, seen, stop))
                # warm up: measure only once the consumer groups have joined and a probe got through
                warm = probe_event(0)
                sent[warm.employee_id] = time.perf_counter()
                await producer.send_and_wait(run.topics.timelogs, warm.model_dump_json().encode(), key=b"probe")
                while warm.employee_id not in seen:  # noqa: ASYNC110 - polling a shared dict
                    await asyncio.sleep(0.1)
                t0 = time.perf_counter()
                probes = 0
                for n in range(rate * seconds):
                    due = t0 + n / rate
                    if (wait := due - time.perf_counter()) > 0:
                        await asyncio.sleep(wait)
                    if n % int(1 / probe_share) == 0:
                        probes += 1
                        event = probe_event(probes)
                        sent[event.employee_id] = time.perf_counter()
                    else:
                        event = next(background)  # type: ignore[assignment]
                    await producer.send(
                        run.topics.timelogs, event.model_dump_json().encode(), key=f"{event.account_id}".encode()
                    )
                await producer.stop()
                await asyncio.sleep(3)
                stop.set()
                await poller
        finally:
            await drop_layout(dsn, run.layout)
        sent.pop(probe_event(0).employee_id, None)
        delays = sorted((seen[k] - t) * 1000 for k, t in sent.items() if k in seen)
        lost = len(sent) - len(delays)
        achieved = rate * seconds / (time.perf_counter() - t0 - 3)
        print(
            f"rate={rate}/s achieved~{achieved:.0f}/s probes={len(sent)} unseen={lost} "
            f"p50={statistics.median(delays):.0f}ms p99={delays[int(len(delays) * 0.99) - 1]:.0f}ms "
            f"max={delays[-1]:.0f}ms"
        )

    with infrastructure() as (kafka, dsn):
        asyncio.run(main(kafka, dsn))


def probe_event(n: int) -> TimelogUpserted:
    start = datetime(2026, 1, 5, 7, tzinfo=UTC)
    return TimelogUpserted(
        account_id="probe",
        timelog_id=f"probe-{n}",
        revision=1,
        employee_id=f"probe-emp-{n}",
        company_id="co",
        job_site_id=f"probe-site-{n}",
        work_date=date(2026, 1, 5),
        clock_in=start,
        clock_out=start + timedelta(hours=8),
        pay_id="REG",
    )


def probe_entry_id(employee_id: str) -> uuid.UUID:
    """The timecard entry a probe creates (entry ids are derived from the entry key)."""
    n = int(employee_id.rsplit("-", 1)[1])
    e = probe_event(n)
    ref = EntryRef(Module.TIMECARD, e.job_site_id, e.work_date, (e.employee_id, e.pay_id, None, None))
    return entry_id(e.account_id, Module.TIMECARD, ref.key)


async def poll_visible(run: Run, sent: dict[str, float], seen: dict[str, float], stop: asyncio.Event) -> None:
    """Every 5 ms, look up (by primary key) the probe entries sent but not seen yet."""
    # prepared again like the services' statements: a plan kept from when `entries` was empty scanned the whole
    # table every 5 ms (a third of a core of PostgreSQL, taken from the service measured)
    conn = await asyncpg.connect(run.dsn, max_cached_statement_lifetime=db.REPLAN_AFTER_S)
    ids: dict[uuid.UUID, str] = {}
    try:
        while not stop.is_set():
            for emp in list(sent):
                if emp not in seen and emp not in ids.values():
                    ids[probe_entry_id(emp)] = emp
            if ids:
                rows = await conn.fetch(
                    f'SELECT entry_id FROM "{run.schema}".entries WHERE entry_id = ANY($1::uuid[])', list(ids)
                )
                now = time.perf_counter()
                for r in rows:
                    seen.setdefault(ids.pop(r["entry_id"]), now)
            await asyncio.sleep(0.005)
    finally:
        await conn.close()


PRELOAD_SQL = """
INSERT INTO timelogs (account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag, job_site_id,
                      work_date, seconds, cost_code_id, pay_class_id, pay_id, quantities)
SELECT 'pre-' || (i % 500), 'pre-' || i, 1, false, 'emp-' || (i % 40), 'co-' || (i % 4), 'crew-' || (i % 2),
       'site-' || ((i / 40) % 10), DATE '2020-01-01' + ((i / 400) % 2000)::int, 28800, 'cc-' || (i % 30), NULL,
       'REG', '[]'::jsonb
  FROM generate_series($1::bigint, $2::bigint) AS i
"""

PRELOAD_ENTRIES_SQL = """
INSERT INTO entries (entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content, fingerprint,
                     contributions, status, version, errors, seconds, units)
SELECT md5(account_id || 't' || job_site_id || work_date || employee_id || cost_code_id)::uuid, account_id,
       'timecard', job_site_id, work_date, job_site_id || work_date || employee_id || cost_code_id,
       jsonb_build_object('employee_id', employee_id, 'pay_id', pay_id, 'cost_code_id', cost_code_id,
                          'pay_class_id', NULL),
       jsonb_build_object('hours', (sum(seconds) / 3600.0)::numeric(10, 2)::text), 'x', count(*), 'todo', 1,
       '[]'::jsonb, sum(seconds), 0
  FROM timelogs WHERE timelog_id LIKE 'pre-%' AND account_id = ANY($1::text[])
 GROUP BY account_id, job_site_id, work_date, employee_id, pay_id, cost_code_id
ON CONFLICT DO NOTHING
"""


@cli.command()
def scale(
    stored: Annotated[int, typer.Option(help="Timelogs stored before the measured stream.")] = 1_000_000,
    events: Annotated[int, typer.Option(help="Timelog events in the measured stream.")] = 100_000,
    batch: int = 2000,
) -> None:
    """Per-event cost with `stored` timelogs (and their timecard entries) already in the tables."""

    async def main(kafka: str, dsn: str) -> None:
        run = Run(kafka, dsn, f"scale{secrets.token_hex(3)}.", f"scale_{secrets.token_hex(3)}_aggregator")
        gen = Generator(Shape(), seed=9)
        try:
            await prepare(run, gen)
            await preload(run, stored, with_ceiling=False)
            result = await measure_throughput(run, gen, events, batch, verify=False)
            per_event_us = 1e6 / result["events_per_s"]
            print(
                f"stored={stored} events={events} events_per_s={result['events_per_s']:.0f} "
                f"per_event={per_event_us:.0f}us"
            )
        finally:
            await drop_layout(dsn, run.layout)

    with infrastructure() as (kafka, dsn):
        asyncio.run(main(kafka, dsn))


async def remap_state(run: Run, account: str) -> tuple[dict[str, int], int, list[asyncpg.Record]]:
    """(the account's entries by status, its remap marks left, its remap rounds)."""
    conn = await asyncpg.connect(run.dsn, server_settings={"search_path": run.schema})
    try:
        try:
            rows = await conn.fetch(
                "SELECT status, count(*) AS n FROM entries WHERE account_id = $1 GROUP BY 1", account
            )
        except asyncpg.UndefinedTableError:  # not migrated yet
            return {}, 0, []
        statuses = {r["status"]: r["n"] for r in rows}
        try:
            marks = await conn.fetchval("SELECT count(*) FROM remap_marks WHERE account_id = $1", account)
            rounds = await conn.fetch("SELECT * FROM remap_rounds WHERE account_id = $1 ORDER BY id", account)
        except asyncpg.UndefinedTableError:  # an aggregator from before issue 11 (`--root`): no remap tables
            return statuses, 0, []
        return statuses, int(marks), rounds
    finally:
        await conn.close()


@cli.command()
def remap(
    codes: Annotated[int, typer.Option(help="Cost codes of the big account, all auto-mapped at once.")] = 1000,
    per_code: Annotated[int, typer.Option(help="Timelogs (and timecard entries) per cost code.")] = 20,
    days: Annotated[int, typer.Option(help="Days the big account's timelogs spread over.")] = 60,
    others: Annotated[int, typer.Option(help="Other accounts producing timelogs meanwhile.")] = 50,
    backlog: Annotated[int, typer.Option(help="Other accounts' timelogs queued for the whole run.")] = 60_000,
    window: Annotated[float, typer.Option(help="Seconds measured without a remap first.")] = 10.0,
    root: Annotated[
        Path, typer.Option(help="Run the aggregator of this checkout (e.g. one from before issue 11, to compare).")
    ] = ROOT,
    limit: Annotated[float, typer.Option(help="Stop waiting for the remap to settle after this many seconds.")] = 600,
    batch: int = 2000,
) -> None:
    """Other accounts' events/s without and during a big remap, and the time until the remap settled."""

    async def main(kafka: str, dsn: str) -> None:
        run = Run(kafka, dsn, f"remap{secrets.token_hex(3)}.", f"remap_{secrets.token_hex(3)}_aggregator")
        work = RemapWorkload(codes=codes, timelogs_per_code=per_code, days=days)
        entries = codes * per_code
        try:
            await provision_layout(run.dsn, run.layout)
            if root == ROOT:  # another checkout's aggregator migrates its own schema when it starts
                await db.migrate(run.service_dsn, run.schema, "services.aggregator.migrations")
            await ensure_topics(run.kafka, run.topics.all())
            async with aggregator(run, batch, root):
                setups = [*work.setup(), *other_setups(others)]
                await produce(run.kafka, run.topics.mapping_changes, *encode(setups, exclude_none=True))
                await produce(run.kafka, run.topics.timelogs, *encode(list(work.timelogs())))
                t0 = time.perf_counter()
                while (await remap_state(run, work.account))[0] != {"non_publishable": entries}:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
                print(f"big account: {entries} entries in {time.perf_counter() - t0:.1f}s, none mapped", flush=True)
                base = await committed(run.kafka, run.topics.timelogs, run.group)
                stream = other_timelogs(others)
                await produce(run.kafka, run.topics.timelogs, *encode([next(stream) for _ in range(backlog)]))
                while await committed(run.kafka, run.topics.timelogs, run.group) == base:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
                # without a remap: other accounts' backlog consumed for `window` seconds
                start, c0 = time.perf_counter(), await committed(run.kafka, run.topics.timelogs, run.group)
                await asyncio.sleep(window)
                quiet_rate = (await committed(run.kafka, run.topics.timelogs, run.group) - c0) / (
                    time.perf_counter() - start
                )
                # the auto-map: every cost code of the big account mapped at once, the backlog still flowing
                earlier = len((await remap_state(run, work.account))[2])  # the rounds of the setup's mappings
                start, c0 = time.perf_counter(), await committed(run.kafka, run.topics.timelogs, run.group)
                auto_map = encode(work.auto_map(), exclude_none=True)
                mapped = await produce(run.kafka, run.topics.mapping_changes, *auto_map)
                sent = time.perf_counter()
                control = f"{run.group}.control"
                while time.perf_counter() - start < limit:
                    statuses, marks, rounds = await remap_state(run, work.account)
                    if statuses == {"todo": entries} and marks == 0:
                        break
                    await asyncio.sleep(0.1)
                settled = time.perf_counter()
                rounds = rounds[earlier:]
                applied = await committed(run.kafka, run.topics.mapping_changes, control)
                done = await committed(run.kafka, run.topics.timelogs, run.group)
                during_rate = (done - c0) / (settled - start)
                left = base + backlog - done
            work_s = sum((r["finished_at"] - r["started_at"]).total_seconds() for r in rounds)
            if rounds:
                origin = rounds[0]["first_marked_at"]
                for r in rounds:
                    print(
                        f"  round: marks={r['marks']} groups={r['groups']} chunks={r['chunks']} "
                        f"started={(r['started_at'] - origin).total_seconds():.1f}s "
                        f"took={(r['finished_at'] - r['started_at']).total_seconds():.2f}s (since the first mark)"
                    )
            state = "settled" if statuses == {"todo": entries} else f"NOT settled ({statuses})"
            print(
                f"codes={codes} entries={entries} rounds={len(rounds)} mapping_events_produced_per_s={mapped:.0f} "
                f"mapping_events_applied={applied - len(work.setup()) - others}\n"
                f"{state} after {settled - start:.1f}s (after the last mapping change was produced: "
                f"{settled - sent:.1f}s; the rounds themselves: {work_s:.2f}s)\n"
                f"other_events_per_s_without={quiet_rate:.0f} other_events_per_s_during={during_rate:.0f} "
                f"ratio={during_rate / quiet_rate:.2f} backlog_left={left} load={os.getloadavg()[0]:.1f}"
            )
            if left <= 0:
                print("the other accounts' backlog ran out during the remap: raise --backlog")
        finally:
            await drop_layout(dsn, run.layout)

    with infrastructure() as (kafka, dsn):
        asyncio.run(main(kafka, dsn))


if __name__ == "__main__":
    cli()
