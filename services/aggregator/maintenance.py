"""Maintenance operations: rebuild entries from the stored timelogs, replay the timelog topic."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.aggregator import handlers
from services.aggregator.adapters import repository as repo

Progress = Callable[[int], None]


async def count_groups(pool: asyncpg.Pool, account_id: str | None) -> dict[str, int]:
    """(job site, day) groups per account, to size the progress bar."""
    async with pool.acquire() as conn:
        accounts = [account_id] if account_id else await repo.all_accounts(conn)
        return {a: len(await repo.groups_of_account(conn, a)) for a in accounts}


async def rebuild(pool: asyncpg.Pool, account_id: str | None, chunk: int, advance: Progress) -> int:
    """Recompute every entry from the stored timelogs, `chunk` groups per transaction.

    Publish state (Procore ids, published content) is kept: entries are settled in place, so a
    rebuild of a correct database changes nothing, and a drifted one is repaired.
    """
    done = 0
    async with pool.acquire() as conn:
        accounts = [account_id] if account_id else await repo.all_accounts(conn)
    for account in accounts:
        async with pool.acquire() as conn:
            groups = sorted(await repo.groups_of_account(conn, account))
        for start in range(0, len(groups), chunk):
            part = groups[start : start + chunk]
            async with pool.acquire() as conn, conn.transaction():
                await handlers.recompute_groups(conn, part)
            done += len(part)
            advance(len(part))
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
