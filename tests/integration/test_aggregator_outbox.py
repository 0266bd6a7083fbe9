"""Each aggregator instance runs an outbox relay: several relays over one schema send every row once, in order.

Real PostgreSQL (the aggregator's schema and its `outbox` table) and the real broker; writers keep
queueing while three relays (each with its own pool, as separate instances have) drain the table.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from shared import db
from shared.broker import ensure_topics
from shared.outbox import OutboxMessage, OutboxRelay, add_to_outbox
from tests.support.database import ProvisionedDatabase, migrated
from tests.support.entries import records_of
from tests.support.kafka import eventually

pytestmark = pytest.mark.integration
RELAYS = 3
WRITERS = 2
PER_WRITER = 150


@pytest.fixture
async def schema(database: ProvisionedDatabase) -> str:
    await migrated(database, "aggregator")
    return database.schema("aggregator")


async def waiting(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("SELECT count(*) FROM outbox"))


async def test_relays_of_several_instances_send_each_row_once_and_in_order(
    kafka_bootstrap: str, database: ProvisionedDatabase, unique: str, schema: str
) -> None:
    topic = f"{unique}.procore.publish-requests"
    await ensure_topics(kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()

    async def publish(body: bytes, to: str, key: str, headers: dict[str, str]) -> None:
        await producer.send_and_wait(to, body, key=key.encode())
        await asyncio.sleep(0.001)  # a slower broker widens the window in which two relays could overlap

    pools = [await db.create_pool(database.dsn("aggregator"), schema, max_size=2) for _ in range(RELAYS + 1)]
    relays = [OutboxRelay(p, publish, schema, batch_size=25, poll_interval_s=0.05) for p in pools[:RELAYS]]

    async def write(writer: int) -> None:
        for n in range(PER_WRITER):
            async with pools[-1].acquire() as conn, conn.transaction():
                payload = json.dumps({"writer": writer, "n": n})
                await add_to_outbox(conn, [OutboxMessage(topic, f"writer-{writer}", payload)])
            for relay in relays:
                relay.notify()

    try:
        for relay in relays:
            relay.start()
        await asyncio.gather(*(write(w) for w in range(WRITERS)))
        await eventually(lambda: waiting(pools[-1]), lambda n: n == 0, timeout_s=60, what="the outbox drained")
    finally:
        for relay in relays:
            await relay.stop()
        for p in pools:
            await p.close()
        await producer.stop()

    sent = [json.loads(r.value) for r in await records_of(kafka_bootstrap, topic)]
    assert len(sent) == WRITERS * PER_WRITER, "every row sent exactly once"
    for writer in range(WRITERS):
        assert [m["n"] for m in sent if m["writer"] == writer] == list(range(PER_WRITER)), "in the order written"
