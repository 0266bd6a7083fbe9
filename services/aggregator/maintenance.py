"""Maintenance operations: rebuild entries from the stored timelogs (in one process or several), replay the
timelog topic."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import multiprocessing
import queue as queues
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.aggregator import handlers
from services.aggregator.adapters import timelogs
from services.aggregator.adapters.store import Store
from services.aggregator.gc_tuning import tune_gc
from shared import db

Progress = Callable[[int], None]
T = TypeVar("T")


async def count_groups(pool: asyncpg.Pool, account_id: str | None) -> dict[str, int]:
    """(job site, day) groups per account, to size the progress bar and share the accounts among processes."""
    async with pool.acquire() as conn:
        accounts = [account_id] if account_id else await timelogs.all_accounts(conn)
        return {a: len(await timelogs.groups_of_account(conn, a)) for a in accounts}


def share_accounts(groups_per_account: dict[str, int], processes: int) -> list[list[str]]:
    """The accounts split into at most `processes` shares of about equal work (groups), biggest first into the
    least loaded share; an account is never split (its recompute holds it exclusively)."""
    shares: list[list[str]] = [[] for _ in range(max(1, min(processes, len(groups_per_account))))]
    load = [(0, i) for i in range(len(shares))]
    for account in sorted(groups_per_account, key=lambda a: (-groups_per_account[a], a)):
        total, i = heapq.heappop(load)
        shares[i].append(account)
        heapq.heappush(load, (total + groups_per_account[account], i))
    return [sorted(share) for share in shares if share]


async def rebuild(pool: asyncpg.Pool, accounts: Sequence[str], chunk: int, advance: Progress, workers: int = 2) -> int:
    """Recompute every entry of these accounts from the stored timelogs, `chunk` groups per transaction, `workers`
    at a time.

    Each chunk is aggregated in SQL (`adapters.timelogs.totals_of_groups`) and compared with its stored entries; only
    the status decisions run in Python, and only entries that changed are written. Publish state (Procore ids,
    published content) is kept: entries are settled in place, so a rebuild of a correct database changes
    nothing, and a drifted one is repaired. Chunks of one account wait for each other (a recompute holds its
    account exclusively); while one worker's chunk is in PostgreSQL, another's status decisions run here.
    """
    queue: asyncio.Queue[list[timelogs.Group] | None] = asyncio.Queue(maxsize=workers * 2)
    done = 0

    async def work() -> None:
        nonlocal done
        while (part := await queue.get()) is not None:
            async with pool.acquire() as conn, conn.transaction():
                await handlers.recompute_groups(Store(conn), part, revalidate=False)
            done += len(part)
            advance(len(part))

    async def feed() -> None:
        # `workers` accounts at a time, their chunks interleaved: concurrent workers mostly hold different accounts
        ordered = sorted(accounts)
        for start in range(0, len(ordered), workers):
            pending = []
            for account in ordered[start : start + workers]:
                async with pool.acquire() as conn:
                    groups = sorted(await timelogs.groups_of_account(conn, account))
                pending.append([groups[i : i + chunk] for i in range(0, len(groups), chunk)])
            for round_ in itertools.zip_longest(*pending):
                for part in round_:
                    if part:
                        await queue.put(part)
        for _ in range(workers):
            await queue.put(None)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(feed())
        for _ in range(workers):
            tasks.create_task(work())
    return done


async def refresh_statistics(pool: asyncpg.Pool) -> None:
    """ANALYZE what a rebuild rewrote: the planner then knows the new tables at once, whether or not autovacuum
    runs (and keeps up)."""
    async with pool.acquire() as conn:
        await conn.execute("ANALYZE entries; ANALYZE entry_members")


async def on_pool(dsn: str, schema: str, use: Callable[[asyncpg.Pool], Awaitable[T]], size: int = 1) -> T:
    """`use` a pool of `size` connections opened for it (and closed after)."""
    pool = await db.create_pool(dsn, schema, max_size=size)
    try:
        return await use(pool)
    finally:
        await pool.close()


@dataclass(frozen=True)
class RebuildJob:
    """What one rebuild process needs: where the entries are, which accounts are its share, how to chunk them."""

    dsn: str
    schema: str
    accounts: list[str]
    chunk: int
    workers: int


def _rebuild_share(job: RebuildJob, progress: multiprocessing.Queue[int]) -> None:  # pragma: no cover - a child
    """A rebuild process: its share of the accounts, each finished chunk's group count sent to the parent."""
    tune_gc()

    asyncio.run(
        on_pool(
            job.dsn,
            job.schema,
            lambda pool: rebuild(pool, job.accounts, job.chunk, progress.put, job.workers),
            job.workers + 1,
        )
    )


class RebuildFailed(RuntimeError):
    """A rebuild process ended with an error (the others were stopped; a rebuild can simply be run again)."""


def rebuild_in_processes(shares: list[RebuildJob], advance: Progress) -> int:
    """Run each share in its own process (the status decisions are Python: one process uses one core), feeding
    `advance` from all of them; fails as soon as one fails, stopping the others. Returns the groups rebuilt."""
    context = multiprocessing.get_context("spawn")
    progress: multiprocessing.Queue[int] = context.Queue()
    children = [
        context.Process(target=_rebuild_share, args=(job, progress), name=f"rebuild-{i + 1}")
        for i, job in enumerate(shares)
    ]
    for child in children:
        child.start()
    done = 0

    def take(timeout: float | None) -> bool:
        nonlocal done
        try:
            groups = progress.get(timeout=timeout) if timeout else progress.get_nowait()
        except queues.Empty:
            return False
        done += groups
        advance(groups)
        return True

    try:
        while not all(child.exitcode == 0 for child in children):
            if not take(0.5) and (failed := [c for c in children if c.exitcode not in (None, 0)]):
                names = ", ".join(f"{c.name} exited with {c.exitcode}" for c in failed)
                raise RebuildFailed(f"{names} (its error is above; running rebuild again is safe)")
        while take(None):  # what the last ones sent just before they exited
            pass
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join()
    return done


async def replay_from_beginning(bootstrap: str, topic: str, group_id: str) -> dict[int, int]:
    """Point the aggregator's consumer group at the start of the timelog topic.

    Run while the aggregator is stopped. Events are applied by revision, so replaying over an
    existing database is harmless; it restores timelogs the database lost.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise SystemExit(f"topic {topic} has no partitions (does it exist?)")
        consumer.assign(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        await consumer.commit(dict(beginnings.items()))
        return {tp.partition: offset for tp, offset in beginnings.items()}
    finally:
        await consumer.stop()
