"""Three aggregator processes in one consumer group produce exactly what one produces.

A generated MobiClocks stream with moves (a move changes a timelog's key, so its revisions land on
different partitions and so on different instances), deletes, duplicates and local reordering goes
through the real broker to three `python -m services.aggregator` processes sharing one schema; the
entries must equal a from-scratch recompute of the events sent.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.ports import free_port
from shared.broker import ensure_topics
from shared.events import TimelogDeleted, TimelogUpserted
from shared.topics import Topics
from tests.bench.generator import Generator, Shape
from tests.support.database import ProvisionedDatabase
from tests.support.entries import (
    applied_timelogs,
    entry_rows,
    final_timelogs,
    mismatches,
    records_of,
    send_keyed,
    stored_setups,
)
from tests.support.kafka import eventually

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
INSTANCES = 3


class Instance:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.aggregator"],
            cwd=ROOT,
            env={**env, "HTTP_PORT": str(self.port)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def healthy(self) -> bool:
        assert self.proc.poll() is None, f"aggregator exited with {self.proc.returncode}"
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"http://127.0.0.1:{self.port}/health", timeout=2)).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def instances(
    kafka_bootstrap: str, database: ProvisionedDatabase, unique: str, schemas: dict[str, str], tmp_path: Path
) -> Iterator[list[Instance]]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database.dsn("aggregator"),
        "TOPIC_PREFIX": f"{unique}.",
        "DB_SCHEMA": schemas["aggregator"],
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "BATCH_MAX_RECORDS": "100",  # many small batches: more of them in flight side by side
        "LOG_LEVEL": "WARNING",
    }
    started: list[Instance] = []
    try:
        for n in range(INSTANCES):
            started.append(Instance(env, tmp_path / f"aggregator-{n}.log"))
        yield started
    finally:
        for instance in started:
            instance.stop()


def reordered(events: list[TimelogUpserted | TimelogDeleted], seed: int) -> list[TimelogUpserted | TimelogDeleted]:
    """Duplicates re-sent later, and events swapped within small windows (delivery may reorder)."""
    rng = random.Random(seed)
    out = list(events)
    for e in rng.sample(events, len(events) // 20):
        out.insert(rng.randrange(len(out)), e)
    for start in range(0, len(out), 40):
        window = out[start : start + 40]
        rng.shuffle(window)
        out[start : start + 40] = window
    return out


async def test_three_instances_in_one_group_equal_a_recompute(
    instances: list[Instance], kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    schema = schemas["aggregator"]
    topics = Topics(f"{unique}.")
    gen = Generator(Shape(accounts=3, job_sites=4, employees=15, edit_share=0.3), seed=8)
    events = reordered(list(gen.events(5000)), seed=8)
    await ensure_topics(kafka_bootstrap, topics.all())
    await send_keyed(kafka_bootstrap, topics.mapping_changes, list(gen.setups()))
    for instance in instances:
        await eventually(instance.healthy, bool, timeout_s=60, what="instance healthy")
    await eventually(lambda: stored_setups(postgres_dsn, schema), lambda n: n == 3, timeout_s=60, what="setups")

    # a steady stream rather than one burst, so every instance has joined and takes partitions while it flows
    await send_keyed(kafka_bootstrap, topics.timelogs, events, chunk=250, pause_s=0.3)
    await eventually(
        lambda: applied_timelogs(postgres_dsn, schema),
        lambda got: got == final_timelogs(gen),
        timeout_s=180,
        what="every event applied",
    )

    stored = await entry_rows(postgres_dsn, schema)
    assert stored.orphan_members == []
    assert mismatches(stored, gen.live.values()) == []
    assert await records_of(kafka_bootstrap, topics.dead_letter("aggregator")) == []
    assert all(instance.proc.poll() is None for instance in instances)
