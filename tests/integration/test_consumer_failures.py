"""Unavailable is not invalid: how every consumer treats failures (real broker, real PostgreSQL, real HTTP).

The consumer under test is `worker_app`: the shared broker factory, record parser, poison isolation and
health routes around a table in PostgreSQL — what each service does, without its domain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from shared import db
from shared.dead_letters import OMITTED_HEADER, REASON_HEADER, read_dead_letters
from tests.integration.worker_app import ATTEMPTS, Probe, Work, running_worker, send
from tests.support.kafka import eventually
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture
async def schema(postgres_dsn: str, unique: str) -> AsyncIterator[str]:
    name = f"t_{unique}_worker"
    yield name
    await db.drop_schemas(postgres_dsn, [name])


def works(first: int, count: int) -> list[Work]:
    return [Work(id=f"w{i}", n=i) for i in range(first, first + count)]


def paused_lines(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str], list[str]]:
    lines = [r.getMessage() for r in caplog.records if r.name == "shared.broker"]
    return (
        [line for line in lines if "consumer paused at" in line],
        [line for line in lines if "consumer still paused" in line],
        [line for line in lines if "consumer resumed after" in line],
    )


async def test_transient_failures_pause_the_consumer_until_they_pass_and_nothing_is_dead_lettered(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.broker")
    probe = Probe()
    async with running_worker(kafka_bootstrap, postgres_dsn, schema, f"{unique}.", probe) as worker:
        await eventually(worker.ready, lambda r: r[0] == 200, what="ready at start")
        probe.transient_until = time.monotonic() + 3.0
        await send(kafka_bootstrap, worker.batch_topic, works(0, 60))
        await send(kafka_bootstrap, worker.single_topic, works(100, 5))

        _, body = await eventually(
            worker.ready,
            lambda r: r[0] == 503 and any(k.startswith(f"consumer {worker.batch_topic}[") for k in r[1]["not_ready"]),
            what="not ready while the batch consumer is paused",
        )
        assert body["database"] is True
        assert body["broker"] is True
        paused = body["not_ready"]
        assert all("Transient('a peer is not ready')" in why for why in paused.values()), body
        assert await worker.done() == {}, "nothing may be stored while the handler fails"

        expected = {w.id: w.n for w in works(0, 60) + works(100, 5)}
        await eventually(worker.done, lambda done: done == expected, timeout_s=30, what="all work done")
        await eventually(worker.ready, lambda r: r[0] == 200, what="ready again")

    assert await read_dead_letters(kafka_bootstrap, worker.dead_letter_topic) == []
    assert sum(probe.deliveries.values()) > 2 * len(expected), "failed batches were tried again, not skipped"
    started, still, resumed = paused_lines(caplog)
    assert 1 <= len(started) <= 2, started  # one per consumer (the batch one and the per-message one)
    assert "is transient (unavailable, not invalid)" in started[0]
    assert still, "a long pause is reported again while it lasts"
    assert len(still) < sum(probe.deliveries.values()) / 4, "rate-limited, not one line per try"
    assert len(resumed) == len(started)
    assert "paused (" in resumed[0]


async def test_a_database_outage_pauses_work_and_it_resumes_where_it_stopped(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schema: str
) -> None:
    proxy, proxied = TcpProxy.for_dsn(postgres_dsn)
    async with (
        proxy,
        running_worker(kafka_bootstrap, proxied, schema, f"{unique}.", read_dsn=postgres_dsn) as worker,
    ):
        await send(kafka_bootstrap, worker.batch_topic, works(0, 100))
        first = {w.id: w.n for w in works(0, 100)}
        await eventually(worker.done, lambda done: done == first, what="first half done")

        await proxy.cut()
        await send(kafka_bootstrap, worker.batch_topic, works(100, 100))
        _, body = await eventually(
            worker.ready, lambda r: r[0] == 503 and "not_ready" in r[1], what="consumer paused on the outage"
        )
        assert body["database"] is False
        assert any(k.startswith(f"consumer {worker.batch_topic}[") for k in body["not_ready"]), body
        await asyncio.sleep(4.0)  # an outage of several seconds: many tries, all refused
        assert await worker.done() == first
        tries_during_outage = sum(worker.probe.deliveries.values())

        await proxy.restore()
        everything = {w.id: w.n for w in works(0, 200)}
        await eventually(worker.done, lambda done: done == everything, timeout_s=30, what="all work done")
        await eventually(worker.ready, lambda r: r[0] == 200, what="ready after the outage")

    assert tries_during_outage > 200, "the paused batches were tried again during the outage"
    assert await read_dead_letters(kafka_bootstrap, worker.dead_letter_topic) == []


async def test_a_deterministic_error_on_one_record_of_a_batch_dead_letters_only_that_record(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schema: str
) -> None:
    # n = -1 violates the table's CHECK constraint: a DataError-like failure the same every time
    batch = [*works(0, 20), Work(id="poison", n=-1), *works(20, 20)]
    async with running_worker(kafka_bootstrap, postgres_dsn, schema, f"{unique}.") as worker:
        await send(kafka_bootstrap, worker.batch_topic, batch)
        good = {w.id: w.n for w in batch if w.id != "poison"}
        await eventually(worker.done, lambda done: done == good, what="every valid record applied")
        dead = await eventually(
            lambda: read_dead_letters(kafka_bootstrap, worker.dead_letter_topic), lambda d: len(d) >= 1
        )
        await asyncio.sleep(0.5)  # nothing else arrives
        dead = await read_dead_letters(kafka_bootstrap, worker.dead_letter_topic)
        assert await worker.ready() == (200, {"status": "ok", "broker": True, "database": True})

    assert len(dead) == 1, [d.reason for d in dead]
    assert dead[0].value == Work(id="poison", n=-1).model_dump_json().encode()
    assert dead[0].reason.startswith(f"handler failed {ATTEMPTS} times: CheckViolationError(")
    assert worker.probe.deliveries["poison"] >= ATTEMPTS


async def test_a_deterministic_error_of_a_single_message_is_retried_a_bounded_number_of_times_then_dead_lettered(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schema: str
) -> None:
    probe = Probe(broken={"w1"})
    async with running_worker(kafka_bootstrap, postgres_dsn, schema, f"{unique}.", probe) as worker:
        await send(kafka_bootstrap, worker.single_topic, works(0, 3))
        await eventually(worker.done, lambda done: done == {"w0": 0, "w2": 2}, what="the others done")
        dead = await eventually(
            lambda: read_dead_letters(kafka_bootstrap, worker.dead_letter_topic), lambda d: len(d) >= 1
        )
    assert [d.reason for d in dead] == [f"handler failed {ATTEMPTS} times: ValueError('a bug in the handler')"]
    assert probe.deliveries["w1"] == ATTEMPTS


async def test_an_error_escaping_a_batch_is_retried_and_reported_never_dead_lettered_wholesale(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe(broken={"w3"}, isolate=False)
    async with running_worker(kafka_bootstrap, postgres_dsn, schema, f"{unique}.", probe) as worker:
        await send(kafka_bootstrap, worker.batch_topic, works(0, 30))
        _, body = await eventually(worker.ready, lambda r: r[0] == 503, what="stuck batch reported")
        assert any("stuck" in why and "ValueError" in why for why in body["not_ready"].values()), body
        assert await read_dead_letters(kafka_bootstrap, worker.dead_letter_topic) == []
        assert any("must isolate poison records" in r.getMessage() for r in caplog.records)

        probe.broken.clear()  # the bug is fixed: the same batch goes through, nothing was lost
        everything = {w.id: w.n for w in works(0, 30)}
        await eventually(worker.done, lambda done: done == everything, what="all work done")
        await eventually(worker.ready, lambda r: r[0] == 200, what="ready again")
    assert await read_dead_letters(kafka_bootstrap, worker.dead_letter_topic) == []


async def test_oversized_and_malformed_messages_are_dead_lettered_at_once_and_the_consumer_moves_on(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schema: str
) -> None:
    big = b'{"id": "big", "n": 1, "pad": "' + b"x" * 300_000 + b'"}'  # over the 256 KiB limit, under 900 kB
    huge = b'{"id": "huge", "n": 1, "pad": "' + b"x" * 2_000_000 + b'"}'  # over what a dead letter may carry
    async with running_worker(kafka_bootstrap, postgres_dsn, schema, f"{unique}.") as worker:
        await send(
            kafka_bootstrap,
            worker.single_topic,
            [big, Work(id="a"), huge, b"\xff\xfe garbage", b'{"id": 5}', Work(id="b")],
            max_request_size=4 << 20,
        )
        await eventually(worker.done, lambda done: done == {"a": 0, "b": 0}, what="valid ones done")
        dead = await eventually(
            lambda: read_dead_letters(kafka_bootstrap, worker.dead_letter_topic), lambda d: len(d) >= 4
        )
        await asyncio.sleep(0.5)
        dead = await read_dead_letters(kafka_bootstrap, worker.dead_letter_topic)

    by_size = {d.size: d for d in dead}
    assert len(dead) == 4
    assert len(by_size) == 4
    assert by_size[len(big)].reason == f"message is {len(big)} bytes; the limit is {256 * 1024}"
    assert by_size[len(big)].value == big
    assert not by_size[len(big)].omitted
    reference = by_size[len(huge)]
    assert reference.omitted
    assert reference.header(OMITTED_HEADER) == "true"
    assert reference.reason == f"message is {len(huge)} bytes; the limit is {256 * 1024}"
    assert reference.value is not None
    assert len(reference.value) < 2000
    assert [r for r in dead if r.header(REASON_HEADER) and "not valid JSON" in r.reason]
    assert any("id: Input should be a valid string" in r.reason for r in dead)


async def test_a_consumer_stopped_while_paused_committed_nothing_past_the_failing_work(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schema: str
) -> None:
    prefix = f"{unique}."
    async with running_worker(kafka_bootstrap, postgres_dsn, schema, prefix, Probe(transient_until=1e12)) as worker:
        await eventually(worker.ready, lambda r: r[0] == 200, what="ready at start")
        await send(kafka_bootstrap, worker.batch_topic, works(0, 40))
        await send(kafka_bootstrap, worker.batch_topic, works(40, 40))
        await eventually(worker.ready, lambda r: r[0] == 503, what="paused")
        assert await worker.done() == {}
    # a new instance of the same consumer group takes over where the first one stopped
    async with running_worker(kafka_bootstrap, postgres_dsn, schema, prefix) as again:
        everything = {w.id: w.n for w in works(0, 80)}
        await eventually(again.done, lambda done: done == everything, timeout_s=30, what="all work done")
    assert await read_dead_letters(kafka_bootstrap, again.dead_letter_topic) == []
