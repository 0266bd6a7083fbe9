"""Unavailable is not invalid: the aggregator under a database outage and with poison events in its batches.

Real broker, real PostgreSQL (reached through a TCP proxy the test cuts), the aggregator running in
this process. Entries are checked against a from-scratch recompute of the events sent.
"""

from __future__ import annotations

import asyncio

import pytest

from shared.broker import REASON_HEADER, ensure_topics
from shared.events import TimelogDeleted, TimelogUpserted
from tests.bench.generator import Generator, Shape
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
from tests.support.proxy import TcpProxy
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration


async def test_a_poison_event_in_a_batch_is_dead_lettered_alone(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    """Events that parse but can never be stored (a revision beyond PostgreSQL's bigint) fail their batch;
    the batch is narrowed down and only they are dead-lettered, with the reason."""
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas)
    gen = Generator(Shape(accounts=2, job_sites=3, employees=10), seed=21)
    events: list[TimelogUpserted | TimelogDeleted] = list(gen.events(600))
    template = next(e for e in events if isinstance(e, TimelogUpserted))
    poison = [template.model_copy(update={"timelog_id": f"poison-{n}", "revision": 2**70}) for n in range(2)]
    events[100:100] = [poison[0]]
    events[450:450] = [poison[1]]
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    await send_keyed(kafka_bootstrap, cfg.topics.mapping_changes, list(gen.setups()))
    async with running(cfg, which=("aggregator",)):
        await send_keyed(kafka_bootstrap, cfg.topics.timelogs, events, chunk=600)
        await eventually(
            lambda: applied_timelogs(postgres_dsn, schemas["aggregator"]),
            lambda got: got == final_timelogs(gen),
            timeout_s=60,
            what="every valid event applied",
        )
        dead = await records_of(kafka_bootstrap, cfg.topics.dead_letter("aggregator"))
    assert sorted(TimelogUpserted.model_validate_json(r.value).timelog_id for r in dead) == ["poison-0", "poison-1"]
    # the revision is refused by PostgreSQL (NumericValueOutOfRangeError, a DataError): arrays go as literals
    reasons = [dict(r.headers)[REASON_HEADER].decode() for r in dead]
    assert all(r.startswith("could not be applied: ") and "out of range for type bigint" in r for r in reasons)
    assert mismatches(await entry_rows(postgres_dsn, schemas["aggregator"]), gen.live.values()) == []


async def test_database_cut_mid_stream_dead_letters_nothing_and_entries_end_exact(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    """PostgreSQL unreachable for a few seconds while timelogs stream in: the consumer waits and retries the
    whole batch, nothing valid is dead-lettered, and afterwards every entry equals a recompute."""
    proxy, proxied_dsn = TcpProxy.for_dsn(postgres_dsn)
    cfg = StackConfig(kafka_bootstrap, proxied_dsn, f"{unique}.", schemas)
    gen = Generator(Shape(accounts=3, job_sites=3, employees=12), seed=17)
    events = list(gen.events(3000))
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    await send_keyed(kafka_bootstrap, cfg.topics.mapping_changes, list(gen.setups()))
    async with proxy, running(cfg, which=("aggregator",)):
        await eventually(lambda: stored_setups(postgres_dsn, schemas["aggregator"]), lambda n: n == 3, what="setups")
        stream = asyncio.create_task(send_keyed(kafka_bootstrap, cfg.topics.timelogs, events, chunk=100, pause_s=0.1))
        await eventually(
            lambda: applied_timelogs(postgres_dsn, schemas["aggregator"]),
            lambda got: len(got) > 300,
            timeout_s=60,
            what="the stream under way",
        )
        await proxy.cut()
        # setup changes arrive meanwhile (re-sent, so the expected entries stay the same): the control
        # consumer cannot apply them either, and must wait too
        await send_keyed(kafka_bootstrap, cfg.topics.mapping_changes, list(gen.setups()))
        await asyncio.sleep(12)  # far beyond a bounded retry budget (5 attempts, ~3 s, used to dead-letter)
        await proxy.restore()
        await stream
        await eventually(
            lambda: applied_timelogs(postgres_dsn, schemas["aggregator"]),
            lambda got: got == final_timelogs(gen),
            timeout_s=120,
            what="every event applied after the outage",
        )
        dead = await records_of(kafka_bootstrap, cfg.topics.dead_letter("aggregator"))
    assert proxy.connections > 0
    assert [dict(r.headers).get(REASON_HEADER, b"").decode() for r in dead] == []
    stored = await entry_rows(postgres_dsn, schemas["aggregator"])
    assert stored.orphan_members == []
    assert mismatches(stored, gen.live.values()) == []
