"""The real aggregator loses nothing when PostgreSQL goes away mid-stream: it pauses, then resumes where it stopped.

Entries are compared with a recompute of the events sent; nothing may be dead-lettered.
"""

from __future__ import annotations

import asyncio
import os
import random
from datetime import date, timedelta

import pytest

from shared.dead_letters import read_dead_letters
from shared.events import Module, SetupChanged, TimelogDeleted, TimelogUpserted
from tests.integration.oracle import differences
from tests.integration.worker_app import send
from tests.support.kafka import eventually, produce
from tests.support.proxy import TcpProxy
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 16)
OUTAGE_S = float(os.environ.get("OUTAGE_TEST_SECONDS", "8"))
"""Longer than the old retry budget (5 tries, 0.2 s doubling: ~3 s) that dead-lettered valid events."""


def stream(count: int, rng: random.Random) -> list[TimelogUpserted | TimelogDeleted]:
    events: list[TimelogUpserted | TimelogDeleted] = []
    revisions: dict[str, int] = {}
    for _ in range(count):
        tid = f"t{rng.randrange(count // 2)}"
        revisions[tid] = revisions.get(tid, 0) + 1
        if rng.random() < 0.05:
            events.append(TimelogDeleted(account_id="acc", timelog_id=tid, revision=revisions[tid]))
            continue
        events.append(
            TimelogUpserted(
                account_id="acc",
                timelog_id=tid,
                revision=revisions[tid],
                employee_id=f"e{rng.randint(1, 30)}",
                company_id=f"c{rng.randint(1, 3)}",
                crew_tag=rng.choice(["A", "B", None]),
                job_site_id=f"s{rng.randint(1, 8)}",
                work_date=DAY + timedelta(days=rng.randint(0, 4)),
                duration_seconds=rng.randint(1, 20) * 900,
                pay_id=rng.choice(["REG", "OT"]),
                cost_code_id=f"cc{rng.randint(1, 5)}",
            )
        )
    return events


def live(events: list[TimelogUpserted | TimelogDeleted]) -> list[TimelogUpserted]:
    """What a from-scratch recompute starts from: the newest revision of each timelog, unless deleted."""
    latest: dict[str, TimelogUpserted | TimelogDeleted] = {}
    for event in events:
        if event.timelog_id not in latest or event.revision > latest[event.timelog_id].revision:
            latest[event.timelog_id] = event
    return [e for e in latest.values() if isinstance(e, TimelogUpserted)]


async def test_aggregator_pauses_through_a_database_outage_and_every_entry_is_right_afterwards(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    rng = random.Random(15)
    events = stream(2000, rng)
    rng.shuffle(events)  # delivery may reorder: revisions decide
    half = len(events) // 2

    proxy, proxied = TcpProxy.for_dsn(postgres_dsn)
    cfg = StackConfig(kafka_bootstrap, proxied, f"{unique}.", schemas)
    async with proxy, running(cfg, which=("aggregator",)):
        await produce(
            kafka_bootstrap,
            cfg.topics.mapping_changes,
            [SetupChanged(account_id="acc", procore_company_id=1, enabled_modules=list(Module), two_way=False)],
        )
        await asyncio.sleep(1.0)
        await send(kafka_bootstrap, cfg.topics.timelogs, events[:half])
        await eventually(
            lambda: differences(postgres_dsn, schemas["aggregator"], live(events[:half])),
            lambda found: found == [],
            timeout_s=60,
            what="the first half applied",
        )
        await proxy.cut()  # mid-stream: the second half arrives while PostgreSQL is away
        await send(kafka_bootstrap, cfg.topics.timelogs, events[half:])
        await asyncio.sleep(OUTAGE_S)
        await proxy.restore()
        await eventually(
            lambda: differences(postgres_dsn, schemas["aggregator"], live(events)),
            lambda found: found == [],
            timeout_s=90,
            what="entries equal to a recompute of every event",
        )
        assert proxy.connections > 1, "the aggregator really went through the proxy"
    assert await read_dead_letters(kafka_bootstrap, cfg.topics.dead_letter("aggregator")) == []
