"""What a dead letter carries, and which ones `list`/`replay` choose (pure rules of shared.dead_letters)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from shared.dead_letters import (
    OMITTED_HEADER,
    REPLAYED_FROM_HEADER,
    DeadLetter,
    Selection,
    dead_letter_headers,
    human_age,
    parse_duration,
    parse_positions,
    plan_replay,
    reference_for,
    reference_headers,
    table,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = b"acc:s1"
    headers: tuple[tuple[str, bytes], ...] = (("traceparent", b"00-abc-def-01"),)


def letter(offset: int, record: Record, reason: str, at: datetime = NOW, omitted: bool = False) -> DeadLetter:
    headers = dead_letter_headers(record, reason, "aggregator", at)
    if omitted:
        headers = reference_headers(headers, record)
    return DeadLetter(
        "p.aggregator.dead-letter",
        0,
        offset,
        record.key,
        record.value,
        tuple((k, v.encode()) for k, v in headers.items()),
        int(at.timestamp() * 1000),
    )


def test_a_dead_letter_keeps_the_original_and_says_where_it_came_from() -> None:
    record = Record("p.mobiclocks.timelogs", 2, 41, b"{bad")
    dl = letter(7, record, "message is not valid JSON", at=NOW - timedelta(minutes=5))
    assert (dl.service, dl.position, dl.source, dl.size) == ("aggregator", "0:7", "p.mobiclocks.timelogs[2]@41", 4)
    assert dl.reason == "message is not valid JSON"
    assert dl.at == NOW - timedelta(minutes=5)
    assert not dl.omitted
    assert dl.replay_headers() == [
        ("traceparent", b"00-abc-def-01"),
        (REPLAYED_FROM_HEADER, b"p.aggregator.dead-letter:0:7"),
    ]


def test_extra_headers_never_override_the_dead_letter_ones() -> None:
    record = Record("t", 0, 1, b"{}")
    headers = dead_letter_headers(record, "why", "svc", NOW, {"x-dead-letter-reason": "forged", "x-extra": "1"})
    assert headers["x-dead-letter-reason"] == "why"
    assert headers["x-extra"] == "1"


def test_a_reference_stands_in_for_a_record_too_large_to_forward() -> None:
    value = b'{"pad": "' + b"z" * 3_000_000 + b'"}'
    record = Record("p.mobiclocks.timelogs", 1, 9, value, headers=(("traceparent", b"t"), ("big", b"q" * 10_000)))
    body = json.loads(reference_for(record, "message is 3000010 bytes; the limit is 262144", "over the limit"))
    assert body["source"] == {"topic": "p.mobiclocks.timelogs", "partition": 1, "offset": 9}
    assert body["size"] == len(value)
    assert body["sha256"] == hashlib.sha256(value).hexdigest()
    assert body["head"] == value[:256].decode()
    assert body["payload_omitted"] == "over the limit"
    headers = reference_headers(dead_letter_headers(record, "r", "aggregator", NOW), record)
    assert headers[OMITTED_HEADER] == "true"
    assert "big" not in headers
    assert headers["traceparent"] == "t"
    dl = letter(3, record, "r", omitted=True)
    assert dl.omitted
    assert dl.size == len(value)


def test_replay_sends_each_source_record_once_and_never_an_omitted_one() -> None:
    a, b = Record("t", 0, 1, b"{a}"), Record("t", 0, 2, b"{b}")
    first, duplicate, other = letter(0, a, "x"), letter(1, a, "x"), letter(2, b, "y")
    omitted = letter(3, Record("t", 1, 5, b"huge"), "z", omitted=True)
    plan = plan_replay([first, duplicate, other, omitted], replayed=set())
    assert plan.sent == [first, other]
    assert plan.already == [duplicate]
    assert plan.omitted == [omitted]
    again = plan_replay([first, duplicate, other, omitted], replayed={first.source, other.source})
    assert again.sent == []
    assert again.already == [first, duplicate, other]


def test_selection_filters_by_reason_source_age_and_position() -> None:
    old = letter(0, Record("src.a", 0, 1, b"1"), "Invalid message: revision", at=NOW - timedelta(hours=3))
    new = letter(1, Record("src.b", 0, 2, b"2"), "handler failed 5 times", at=NOW - timedelta(minutes=2))
    both = [old, new]
    assert Selection(reason_contains="INVALID").apply(both, NOW) == [old]
    assert Selection(source_topic="src.b").apply(both, NOW) == [new]
    assert Selection(older_than=timedelta(hours=1)).apply(both, NOW) == [old]
    assert Selection(newer_than=timedelta(minutes=10)).apply(both, NOW) == [new]
    assert Selection(positions=frozenset({"0:1"})).apply(both, NOW) == [new]
    assert Selection(limit=1).apply(both, NOW) == [old]


def test_durations_and_positions_are_read_strictly() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("1.5d") == timedelta(days=1.5)
    assert parse_positions("0:12, 2:5") == {"0:12", "2:5"}
    for bad in ("10", "two hours", "-1h"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="not a partition:offset"):
        parse_positions("0:12,7")


def test_the_table_is_aligned_and_marks_replayed_and_omitted_ones() -> None:
    kept = letter(0, Record("src", 0, 1, b"{}"), "invalid message: revision: Field required", NOW - timedelta(hours=2))
    big = letter(11, Record("src", 3, 77, b"x" * 3_000_000), "message is too big", omitted=True)
    lines = table([kept, big], replayed={kept.source}, now=NOW).splitlines()
    assert lines[0].split() == ["SERVICE", "POSITION", "AGE", "SIZE", "SOURCE", "REPLAYED", "REASON"]
    assert lines[1].split() == [
        "aggregator",
        "0:0",
        "2h",
        "2",
        "B",
        "src[0]@1",
        "yes",
        "invalid",
        "message:",
        "revision:",
        "Field",
        "required",
    ]
    assert "2.9 MiB (omitted)" in lines[2]
    assert lines[1].index("src[0]") == lines[2].index("src[3]")
    assert human_age(timedelta(seconds=-3)) == "0s"
    assert human_age(timedelta(days=3, hours=1)) == "3d"
