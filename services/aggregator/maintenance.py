"""Maintenance operations: rebuild entries from the stored timelogs, replay the timelog topic."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.aggregator import handlers
from services.aggregator.adapters import timelogs
from services.aggregator.adapters.store import Store

Progress = Callable[[int], None]


async def count_groups(pool: asyncpg.Pool, account_id: str | None) -> dict[str, int]:
    """(job site, day) groups per account, to size the progress bar."""
    async with pool.acquire() as conn:
        accounts = [account_id] if account_id else await timelogs.all_accounts(conn)
        return {a: len(await timelogs.groups_of_account(conn, a)) for a in accounts}


async def rebuild(pool: asyncpg.Pool, account_id: str | None, chunk: int, advance: Progress, workers: int = 2) -> int:
    """Recompute every entry from the stored timelogs, `chunk` groups per transaction, `workers` at a time.

    Each chunk is aggregated in SQL (`adapters.timelogs.totals_of_groups`) and compared with its stored entries; only
    the status decisions run in Python, and only entries that changed are written. Publish state (Procore ids,
    published content) is kept: entries are settled in place, so a rebuild of a correct database changes
    nothing, and a drifted one is repaired. Chunks of one account wait for each other (a recompute holds its
    account exclusively); while one worker's chunk is in PostgreSQL, another's status decisions run here.
    """
    async with pool.acquire() as conn:
        accounts = [account_id] if account_id else await timelogs.all_accounts(conn)
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
