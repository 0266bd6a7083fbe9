"""How long a consumer waits between tries, what it reports while it waits, and the readiness registry."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition

from shared.consumer_stalls import ConsumerStalls, backoff_delay
from shared.readiness import Readiness, health_body
from shared.settings import ConsumerSettings

A0, A1 = TopicPartition("timelogs", 0), TopicPartition("timelogs", 1)


def test_backoff_doubles_from_the_base_up_to_the_cap_with_jitter() -> None:
    lowest = [backoff_delay(n, 0.2, 30.0, rand=lambda: 0.0) for n in range(1, 12)]
    highest = [backoff_delay(n, 0.2, 30.0, rand=lambda: 1.0) for n in range(1, 12)]
    assert highest[:4] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert lowest[:2] == pytest.approx([0.1, 0.2])
    assert highest[-1] == 30.0
    assert lowest[-1] == 15.0
    assert backoff_delay(10_000, 0.2, 30.0) <= 30.0, "an hour-long outage never overflows"


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Consumer:
    """Only what the stall bookkeeping asks of a consumer: its assignment."""

    assigned: set[TopicPartition] = field(default_factory=lambda: {A0, A1})

    def assignment(self) -> set[TopicPartition]:
        return self.assigned


def stalls(clock: Clock) -> ConsumerStalls:
    settings = ConsumerSettings(consumer_max_attempts=3, consumer_pause_log_interval_s=30.0)
    return ConsumerStalls("aggregator", settings, clock=clock)


def test_tries_count_per_position_and_by_kind() -> None:
    clock, consumer = Clock(), Consumer()
    s = stalls(clock)
    outage = ConnectionRefusedError()
    assert [s.failed({A0: 5}, consumer, outage, transient=True) for _ in range(3)] == [1, 2, 3]
    assert s.failed({A0: 5}, consumer, ValueError(), transient=False) == 1, "transient tries say nothing of the message"
    assert s.failed({A0: 9}, consumer, ValueError(), transient=False) == 1, "a later offset starts over"
    s.succeeded([A0])
    assert s.failed({A0: 9}, consumer, ValueError(), transient=False) == 1


def test_readiness_names_paused_and_stuck_partitions_and_forgets_revoked_ones() -> None:
    clock, consumer = Clock(), Consumer()
    s = stalls(clock)
    s.failed({A0: 5}, consumer, ConnectionRefusedError("db"), transient=True)
    for _ in range(2):
        s.failed({A1: 7}, consumer, ValueError("bug"), transient=False)
    clock.now += 12
    assert s.problems() == {"consumer timelogs[0]": "paused 12s at offset 5: ConnectionRefusedError('db')"}
    s.failed({A1: 7}, consumer, ValueError("bug"), transient=False)
    assert s.problems()["consumer timelogs[1]"] == "stuck 12s on a failing batch at offset 7: ValueError('bug')"
    consumer.assigned = {A1}  # a rebalance moved partition 0 away
    assert list(s.problems()) == ["consumer timelogs[1]"]
    s.succeeded([A1])
    assert s.problems() == {}


def test_a_pause_is_logged_when_it_starts_now_and_then_and_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shared.broker")
    clock, consumer = Clock(), Consumer()
    s = stalls(clock)
    for _ in range(200):  # about an hour of tries, 18 s apart
        s.failed({A0: 5, A1: 2}, consumer, ConnectionRefusedError("db"), transient=True)
        s.note_transient(consumer, {A0: 5, A1: 2}, ConnectionRefusedError("db"), 18.0)
        clock.now += 18
    s.succeeded([A0])
    assert not [r for r in caplog.records if "resumed" in r.getMessage()], "partition 1 still waits"
    s.succeeded([A1])
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "consumer paused at timelogs[0]@5, timelogs[1]@2" in m]) == 1
    assert 90 <= len([m for m in lines if "still paused" in m]) <= 110  # every 30 s (each second try), not every try
    assert [m for m in lines if "resumed" in m] == ["aggregator: consumer resumed after 3600.0s paused (200 tries)"]


def test_readiness_registry_combines_problems_probes_and_components() -> None:
    @dataclass
    class Relay:
        healthy: bool = True

    relay = Relay()
    later: dict[str, Relay | None] = {"relay": None}
    readiness = Readiness()
    readiness.watch("outbox relay", relay)
    readiness.watch("late relay", lambda: later["relay"])
    readiness.add_probe(lambda: {"consumer x[0]": "paused"})
    readiness.not_ready("warm-up", "loading")
    assert readiness.problems() == {"late relay": "not started", "consumer x[0]": "paused", "warm-up": "loading"}
    relay.healthy = False
    later["relay"] = Relay()
    readiness.ready("warm-up")
    assert readiness.problems() == {"outbox relay": "not healthy", "consumer x[0]": "paused"}


def test_health_body_is_200_only_when_every_check_passed_and_nothing_is_wrong() -> None:
    assert health_body({"database": True, "broker": True}, {}) == (
        200,
        {"status": "ok", "database": True, "broker": True},
    )
    code, body = health_body({"database": True, "broker": True}, {"consumer t[0]": "paused 3s"})
    assert code == 503
    assert body["status"] == "not ready"
    assert body["not_ready"] == {"consumer t[0]": "paused 3s"}
    assert health_body({"database": False, "broker": True}, {})[0] == 503


def test_the_fetch_wait_is_a_setting_with_a_short_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.broker import consumer_options

    monkeypatch.delenv("KAFKA_FETCH_MAX_WAIT_MS", raising=False)
    assert consumer_options("publisher")["fetch_max_wait_ms"] == 50
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", "2000")  # what the chaos suite gives services on Tansu's s3 storage
    assert consumer_options("publisher")["fetch_max_wait_ms"] == 2000
    assert consumer_options("publisher", fetch_max_wait_ms=120)["fetch_max_wait_ms"] == 120
    monkeypatch.setenv("KAFKA_FETCH_MAX_WAIT_MS", "0")
    with pytest.raises(ValueError, match="kafka_fetch_max_wait_ms"):
        consumer_options("publisher")
