"""Poison in the timelog stream: each bad message is dead-lettered once with its reason, every valid one counts.

The real aggregator (batch subscriber), real broker, real PostgreSQL. Entries are compared with a recompute
of the valid events sent, not with the system's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import date, timedelta

import pytest

from shared.dead_letters import read_dead_letters
from shared.events import Module, SetupChanged, TimelogDeleted, TimelogUpserted
from tests.integration.oracle import differences
from tests.integration.worker_app import send
from tests.support.kafka import eventually, produce
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 16)
LIMIT = 256 * 1024


def upsert(tid: str, rev: int, rng: random.Random) -> TimelogUpserted:
    return TimelogUpserted(
        account_id="acc",
        timelog_id=tid,
        revision=rev,
        employee_id=f"e{rng.randint(1, 6)}",
        company_id="c1",
        crew_tag=rng.choice(["A", "B"]),
        job_site_id=f"s{rng.randint(1, 4)}",
        work_date=DAY + timedelta(days=rng.randint(0, 2)),
        duration_seconds=rng.randint(1, 10) * 1800,
        pay_id="REG",
        cost_code_id="cc1",
    )


def valid_dict(**changes: object) -> dict[str, object]:
    base = json.loads(upsert("x", 1, random.Random(1)).model_dump_json())
    return {**base, **changes}


POISON: dict[str, bytes] = {
    "invalid JSON": b'{"type": "timelog.upserted", ',
    "garbage bytes": bytes(range(256)) * 4,
    "wrong type": json.dumps(valid_dict(type="timelog.renamed")).encode(),
    "wrong version": json.dumps(valid_dict(schema_version=2)).encode(),
    "missing fields": b'{"type": "timelog.upserted", "account_id": "acc", "timelog_id": "m"}',
    "absurd duration": json.dumps(valid_dict(duration_seconds=10**9)).encode(),
    "bad date": json.dumps(valid_dict(work_date="2026-13-45")).encode(),
    "clock out before in": json.dumps(
        valid_dict(duration_seconds=None, clock_in="2026-11-16T10:00:00Z", clock_out="2026-11-16T08:00:00Z")
    ).encode(),
    "2 MB event": json.dumps(valid_dict(timelog_id="big", notes="x" * 2_000_000)).encode(),
}
EXPECTED_REASON = {
    "invalid JSON": "message is not valid JSON",
    "garbage bytes": "message is not valid JSON",
    "wrong type": "does not match any of the expected tags",
    "wrong version": "schema_version: Input should be 1",
    "missing fields": "revision: Field required",
    "absurd duration": "duration_seconds: Input should be less than or equal to 604800",
    "bad date": "work_date: Input should be a valid date",
    "clock out before in": "clock_out is before clock_in",
    "2 MB event": f"bytes; the limit is {LIMIT}",
}


async def test_poison_messages_are_dead_lettered_once_each_and_every_valid_event_counts(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    rng = random.Random(8)
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas)
    topics = cfg.topics
    stream: list[TimelogUpserted | TimelogDeleted] = []
    for i in range(300):
        stream.append(upsert(f"t{i}", 1, rng))
        if i % 5 == 0:
            stream.append(upsert(f"t{i}", 2, rng))  # an edit (often a move)
        if i % 17 == 0:
            stream.append(TimelogDeleted(account_id="acc", timelog_id=f"t{i}", revision=3))
    values: list[bytes] = [e.model_dump_json().encode() for e in stream]
    poison_at = {name: rng.randrange(len(values)) for name in POISON}
    for name, at in sorted(poison_at.items(), key=lambda kv: -kv[1]):
        values.insert(at, POISON[name])
    values.append(upsert("last", 1, rng).model_dump_json().encode())  # after all poison: proves it moved on

    latest: dict[str, TimelogUpserted | TimelogDeleted] = {}
    for event in stream:
        latest[event.timelog_id] = event
    live = [e for e in latest.values() if isinstance(e, TimelogUpserted)]
    live.append(TimelogUpserted.model_validate_json(values[-1]))

    async with running(cfg, which=("aggregator",)):
        await produce(
            kafka_bootstrap,
            topics.mapping_changes,
            [SetupChanged(account_id="acc", procore_company_id=1, enabled_modules=list(Module), two_way=False)],
        )
        await asyncio.sleep(1.0)  # modules enabled before the timelogs arrive
        await send(kafka_bootstrap, topics.timelogs, values, max_request_size=4 << 20)

        await eventually(
            lambda: differences(postgres_dsn, schemas["aggregator"], live),
            lambda found: found == [],
            timeout_s=60,
            what="entries equal to a recompute of the valid events",
        )
        dead = await eventually(
            lambda: read_dead_letters(kafka_bootstrap, topics.dead_letter("aggregator")),
            lambda found: len(found) >= len(POISON),
        )
        await asyncio.sleep(1.0)  # nothing more arrives: each was dead-lettered once, never again
        dead = await read_dead_letters(kafka_bootstrap, topics.dead_letter("aggregator"))

    assert len(dead) == len(POISON), [d.reason for d in dead]
    assert len({d.source for d in dead}) == len(POISON)
    by_value = {d.value: d for d in dead if not d.omitted}
    for name, body in POISON.items():
        if name == "2 MB event":
            continue
        assert body in by_value, f"{name} was not dead-lettered"
        assert EXPECTED_REASON[name] in by_value[body].reason, (name, by_value[body].reason)
    (reference,) = [d for d in dead if d.omitted]
    assert reference.size == len(POISON["2 MB event"])
    assert reference.reason == f"message is {reference.size} bytes; the limit is {LIMIT}"
    assert reference.value is not None
    summary = json.loads(reference.value)
    assert summary["size"] == reference.size
    assert len(summary["sha256"]) == 64
    assert summary["source"]["topic"] == topics.timelogs
