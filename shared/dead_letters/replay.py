"""Reading dead-letter topics back and replaying chosen dead letters to their source topics (I/O)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from shared.dead_letters.letters import DeadLetter
from shared.kafka_security import KafkaConnectionSettings
from shared.topics import REPLAY_MARKER_SUFFIX


def marker_topic(dead_letter_topic: str) -> str:
    return f"{dead_letter_topic}{REPLAY_MARKER_SUFFIX}"


async def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 30.0, connection: KafkaConnectionSettings | None = None
) -> list[Any]:
    """Every record of `topic` up to its current end (no consumer group, nothing committed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    options = (connection or KafkaConnectionSettings()).client_options()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="dead-letters", **options
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():  # asks the broker; a missing topic is not created
            return []
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout_s:.0f}s")
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for part in batch.values():
                records.extend(part)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        await consumer.stop()


async def read_dead_letters(
    bootstrap: str, topic: str, connection: KafkaConnectionSettings | None = None
) -> list[DeadLetter]:
    return [DeadLetter.from_record(r) for r in await read_topic(bootstrap, topic, connection=connection)]


async def read_replayed(bootstrap: str, topic: str, connection: KafkaConnectionSettings | None = None) -> set[str]:
    """Source positions already replayed from dead-letter topic `topic`."""
    records = await read_topic(bootstrap, marker_topic(topic), connection=connection)
    return {r.key.decode() for r in records if r.key}


async def replay(
    bootstrap: str,
    dead_letter_topic: str,
    letters: Sequence[DeadLetter],
    progress: tqdm[Any],
    connection: KafkaConnectionSettings | None = None,
) -> None:
    """Send each dead letter back to its source topic, then mark it replayed (a crash in between may send it
    once more on the next replay: consumers are idempotent, delivery is at-least-once)."""
    from aiokafka import AIOKafkaProducer

    from shared.broker import ensure_topics

    connection = connection or KafkaConnectionSettings()
    await ensure_topics(bootstrap, [marker_topic(dead_letter_topic)], partitions=1, connection=connection)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id="dead-letters", linger_ms=5, **connection.client_options()
    )
    await producer.start()
    try:
        for letter in letters:
            assert letter.source_topic is not None, "only dead letters with a source topic can be replayed"
            sent = await producer.send_and_wait(
                letter.source_topic, letter.value, key=letter.key, headers=letter.replay_headers()
            )
            marker = {
                "dead_letter": f"{letter.topic}:{letter.position}",
                "to": f"{sent.topic}[{sent.partition}]@{sent.offset}",
                "at": datetime.now(UTC).isoformat(),
            }
            await producer.send_and_wait(
                marker_topic(dead_letter_topic), json.dumps(marker).encode(), key=letter.source.encode()
            )
            progress.update(1)
    finally:
        await producer.stop()
