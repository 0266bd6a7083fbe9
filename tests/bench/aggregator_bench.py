"""Aggregator benchmark: one aggregator process, the real broker, real PostgreSQL.

    python -m tests.bench.aggregator_bench throughput --events 200000
    python -m tests.bench.aggregator_bench latency --rate 1000 --seconds 30
    python -m tests.bench.aggregator_bench scale --stored 1000000 --events 100000

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
from collections.abc import AsyncIterator, Iterator
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
async def aggregator(run: Run, batch: int) -> AsyncIterator[subprocess.Popen[bytes]]:
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
    proc = subprocess.Popen([sys.executable, "-m", "services.aggregator"], cwd=ROOT, env=env)  # noqa: ASYNC220
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


def encode(events: list[object]) -> tuple[list[bytes], list[bytes]]:
    values, keys = [], []
    for e in events:
        values.append(e.model_dump_json().encode())  # type: ignore[attr-defined]
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


async def measure_throughput(run: Run, gen: Generator, events: int, batch: int, verify: bool) -> dict[str, float]:
    stream = list(gen.events(events))
    values, keys = encode(stream)
    async with aggregator(run, batch):
        # setups first (another consumer group), so the timelog backlog is measured on its own
        while await setups_applied(run) < gen.shape.accounts:  # noqa: ASYNC110 - polling the database
            await asyncio.sleep(0.2)
        produced = await produce(run.kafka, run.topics.timelogs, values, keys)
        first, last = await wait_consumed(run, len(values), timeout_s=3600)
    result = {"events": float(len(values)), "produce_per_s": produced, "events_per_s": len(values) / (last - first)}
    if verify:
        problems = mismatches(await entry_rows(run.dsn, run.schema), gen.live.values())
        result["mismatches"] = float(len(problems))
    return result


@cli.command()
def throughput(
    events: Annotated[int, typer.Option(help="Timelog events to apply.")] = 200_000,
    batch: Annotated[int, typer.Option(help="BATCH_MAX_RECORDS of the aggregator.")] = 2000,
    verify: Annotated[bool, typer.Option(help="Compare the entries with a from-scratch recompute.")] = True,
    keep: bool = False,
) -> None:
    """Sustained events/s of one aggregator process (a backlog consumed from the broker)."""

    async def main(kafka: str, dsn: str) -> None:
        run = Run(kafka, dsn, f"bench{secrets.token_hex(3)}.", f"bench_{secrets.token_hex(3)}_aggregator")
        gen = Generator(Shape(), seed=3)
        try:
            await prepare(run, gen)
            result = await measure_throughput(run, gen, events, batch, verify)
            print(" ".join(f"{k}={v:.0f}" for k, v in result.items()))
        finally:
            if not keep:
                await drop_layout(dsn, run.layout)

    with infrastructure() as (kafka, dsn):
        asyncio.run(main(kafka, dsn))


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
        account_id="probe", timelog_id=f"probe-{n}", revision=1, employee_id=f"probe-emp-{n}", company_id="co",
        job_site_id=f"probe-site-{n}", work_date=date(2026, 1, 5), clock_in=start, clock_out=start + timedelta(hours=8),
        pay_id="REG",
    )  # fmt: skip


def probe_entry_id(employee_id: str) -> uuid.UUID:
    """The timecard entry a probe creates (entry ids are derived from the entry key)."""
    n = int(employee_id.rsplit("-", 1)[1])
    e = probe_event(n)
    ref = EntryRef(Module.TIMECARD, e.job_site_id, e.work_date, (e.employee_id, e.pay_id, None, None))
    return entry_id(e.account_id, Module.TIMECARD, ref.key)


async def poll_visible(run: Run, sent: dict[str, float], seen: dict[str, float], stop: asyncio.Event) -> None:
    """Every 5 ms, look up (by primary key) the probe entries sent but not seen yet."""
    conn = await asyncpg.connect(run.dsn)
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
            conn = await asyncpg.connect(dsn, server_settings={"search_path": run.schema})
            t0 = time.perf_counter()
            step = 500_000
            for start in range(0, stored, step):
                await conn.execute(PRELOAD_SQL, start, min(start + step, stored) - 1)
            accounts = [f"pre-{a}" for a in range(500)]
            for i in range(0, len(accounts), 50):
                await conn.execute(PRELOAD_ENTRIES_SQL, accounts[i : i + 50])
            await conn.execute("ANALYZE")
            size = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
            await conn.close()
            print(f"preloaded {stored} timelogs in {time.perf_counter() - t0:.0f}s (database {size})", flush=True)
            result = await measure_throughput(run, gen, events, batch, verify=False)
            per_event_us = 1e6 / result["events_per_s"]
            print(f"stored={stored} events={events} events_per_s={result['events_per_s']:.0f} "
                  f"per_event={per_event_us:.0f}us")  # fmt: skip
        finally:
            await drop_layout(dsn, run.layout)

    with infrastructure() as (kafka, dsn):
        asyncio.run(main(kafka, dsn))


if __name__ == "__main__":
    cli()
