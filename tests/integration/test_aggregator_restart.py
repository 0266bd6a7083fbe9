"""The aggregator killed mid-stream loses and double-counts nothing; rebuild and replay change nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.ports import free_port
from shared.broker import ensure_topics
from tests.bench.generator import Generator, Shape
from tests.support.database import ProvisionedDatabase
from tests.support.entries import entry_rows, mismatches
from tests.support.kafka import eventually, produce

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class Aggregator:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.aggregator"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "services.aggregator", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout + result.stderr


@pytest.fixture
def aggregator(
    kafka_bootstrap: str, database: ProvisionedDatabase, unique: str, schemas: dict[str, str]
) -> Iterator[Aggregator]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database.dsn("aggregator"),
        "TOPIC_PREFIX": f"{unique}.",
        "DB_SCHEMA": schemas["aggregator"],
        "HTTP_PORT": str(free_port()),
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "BATCH_MAX_RECORDS": "150",
        "LOG_LEVEL": "WARNING",
    }
    agg = Aggregator(env)
    yield agg
    if agg.proc is not None and agg.proc.poll() is None:
        agg.kill()


async def lag(bootstrap: str, topic: str, group: str) -> int:
    """Records of `topic` the aggregator's consumer group has not committed yet."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions)
        total = 0
        for tp in partitions:
            total += ends[tp] - (await consumer.committed(tp) or 0)
        return total
    finally:
        await consumer.stop()


async def stored_timelogs(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".timelogs') or 0)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


async def applied(dsn: str, schema: str) -> set[tuple[str, str, int, bool]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT account_id, timelog_id, revision, deleted FROM "{schema}".timelogs')
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await conn.close()
    return {(r["account_id"], r["timelog_id"], r["revision"], r["deleted"]) for r in rows}


async def delete_entries(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DELETE FROM "{schema}".entries')  # members and publish requests go with them
    finally:
        await conn.close()


async def test_kill_restart_rebuild_and_replay(
    aggregator: Aggregator, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    schema = schemas["aggregator"]
    topics_prefix = f"{unique}."
    gen = Generator(Shape(accounts=3, job_sites=3, employees=12), seed=11)
    events = list(gen.events(4000))
    final = {(e.account_id, e.timelog_id, e.revision, False) for e in gen.live.values()}
    deleted = {k for k in gen.revisions if k not in gen.live}
    expected = final | {(a, t, gen.revisions[(a, t)], True) for a, t in deleted}

    from shared.topics import Topics

    topics = Topics(topics_prefix)
    await ensure_topics(kafka_bootstrap, topics.all())
    await produce(kafka_bootstrap, topics.mapping_changes, list(gen.setups()))
    await produce(kafka_bootstrap, topics.timelogs, list(events))

    aggregator.start()
    await eventually(lambda: stored_timelogs(postgres_dsn, schema), lambda n: n > 300, timeout_s=60, what="progress")
    aggregator.kill(signal.SIGKILL)  # mid-stream, no goodbye
    partial = await stored_timelogs(postgres_dsn, schema)
    aggregator.start()
    await eventually(lambda: applied(postgres_dsn, schema), lambda got: got == expected, timeout_s=120, what="all")
    # the setup (a separate consumer group) may land after the timelogs; it then builds the entries

    async def differences() -> list[str]:
        # Read under one snapshot (two plain statements raced the aggregator's commits: members of an entry
        # created in between had no entry). Entries may still be catching up, so `eventually` retries on
        # differences; members without their entry are wrong in every snapshot, so they fail at once.
        stored = await entry_rows(postgres_dsn, schema)
        assert stored.orphan_members == [], f"members of entries that do not exist: {stored.orphan_members}"
        return mismatches(stored, gen.live.values())

    await eventually(differences, lambda d: d == [], timeout_s=60, what="entries equal to a recompute")
    before = await entry_rows(postgres_dsn, schema)
    assert 0 < partial < len(expected)

    aggregator.kill(signal.SIGTERM)
    out = aggregator.run("rebuild", "--processes", "2")
    assert "rebuilt" in out
    assert "in 2 process(es)" in out
    after_rebuild = await entry_rows(postgres_dsn, schema)
    assert after_rebuild.keys() == before.keys()
    assert all(after_rebuild[k]["content"] == before[k]["content"] for k in before)
    assert all(after_rebuild[k]["status"] == before[k]["status"] for k in before)
    assert {k: v["version"] for k, v in after_rebuild.items()} == {k: v["version"] for k, v in before.items()}

    # from empty, in one process and in two (the accounts shared out): the very same entries, ids included
    for processes in ("1", "2"):
        await delete_entries(postgres_dsn, schema)
        assert await entry_rows(postgres_dsn, schema) == {}
        out = aggregator.run("rebuild", "--processes", processes, "--chunk", "7")
        assert f"in {processes} process(es)" in out
        rebuilt = await entry_rows(postgres_dsn, schema)
        assert mismatches(rebuilt, gen.live.values()) == []
        assert rebuilt.keys() == before.keys()
        assert all(rebuilt[k]["content"] == before[k]["content"] for k in before)
        assert all(rebuilt[k]["status"] == before[k]["status"] for k in before)

    # entries created anew start at version 1 again: the replay below must leave these as they are
    rebuilt_versions = {k: v["version"] for k, v in (await entry_rows(postgres_dsn, schema)).items()}

    assert await lag(kafka_bootstrap, topics.timelogs, f"{topics_prefix}aggregator") == 0
    out = aggregator.run("replay")
    assert "reset to" in out
    assert await lag(kafka_bootstrap, topics.timelogs, f"{topics_prefix}aggregator") == len(events)
    aggregator.start()
    # replay re-delivers every event; all are stale now, so nothing may change
    await eventually(
        lambda: lag(kafka_bootstrap, topics.timelogs, f"{topics_prefix}aggregator"),
        lambda n: n == 0,
        timeout_s=60,
        what="replayed",
    )
    after_replay = await entry_rows(postgres_dsn, schema)
    assert mismatches(after_replay, gen.live.values()) == []
    assert {k: v["version"] for k, v in after_replay.items()} == rebuilt_versions
