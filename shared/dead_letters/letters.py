"""What a dead letter carries: the `x-dead-letter-*` headers, the reference that replaces an oversize record, and
`DeadLetter`, a dead-letter record read back."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PREFIX = "x-dead-letter-"
REASON_HEADER = "x-dead-letter-reason"
SOURCE_TOPIC_HEADER = "x-dead-letter-source-topic"
SOURCE_PARTITION_HEADER = "x-dead-letter-source-partition"
SOURCE_OFFSET_HEADER = "x-dead-letter-source-offset"
SERVICE_HEADER = "x-dead-letter-service"
AT_HEADER = "x-dead-letter-at"
SIZE_HEADER = "x-dead-letter-size"
OMITTED_HEADER = "x-dead-letter-payload-omitted"
SHA256_HEADER = "x-dead-letter-sha256"
REPLAYED_FROM_HEADER = "x-replayed-from"

SERVICES = ("aggregator", "publisher", "mapping")
HEAD_BYTES = 256


def dead_letter_headers(
    record: Any, reason: str, service: str, now: datetime, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The original record's headers, then `extra`, then the dead-letter ones."""
    out = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    out.update(extra or {})
    out.update(
        {
            REASON_HEADER: reason,
            SOURCE_TOPIC_HEADER: record.topic,
            SOURCE_PARTITION_HEADER: str(record.partition),
            SOURCE_OFFSET_HEADER: str(record.offset),
            SERVICE_HEADER: service,
            AT_HEADER: now.isoformat(),
            SIZE_HEADER: str(len(record.value or b"")),
        }
    )
    return out


def record_size(value: bytes | None, key: bytes | None, headers: dict[str, str]) -> int:
    return len(value or b"") + len(key or b"") + sum(len(k) + len(v.encode()) for k, v in headers.items())


def reference_for(record: Any, reason: str, why_omitted: str) -> bytes:
    """A small stand-in for a record that cannot be forwarded whole: enough to find and judge it."""
    value: bytes = record.value or b""
    return json.dumps(
        {
            "payload_omitted": why_omitted,
            "reason": reason,
            "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
            "size": len(value),
            "sha256": hashlib.sha256(value).hexdigest(),
            "head": value[:HEAD_BYTES].decode("utf-8", errors="replace"),
        }
    ).encode()


def reference_headers(headers: dict[str, str], record: Any) -> dict[str, str]:
    """Only our own headers go with a reference (the original ones may be what made it too large)."""
    out = {k: v for k, v in headers.items() if k.startswith(PREFIX) or k in ("traceparent", "tracestate")}
    out[OMITTED_HEADER] = "true"
    out[SHA256_HEADER] = hashlib.sha256(record.value or b"").hexdigest()
    return out


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic, read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode(errors="replace")
        return None

    @classmethod
    def from_record(cls, record: Any) -> DeadLetter:
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            tuple(record.headers or ()),
            record.timestamp,
        )

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def service(self) -> str:
        return self.header(SERVICE_HEADER) or self.topic.rsplit(".dead-letter", 1)[0].rsplit(".", 1)[-1]

    @property
    def reason(self) -> str:
        return self.header(REASON_HEADER) or "(no reason given)"

    @property
    def source_topic(self) -> str | None:
        return self.header(SOURCE_TOPIC_HEADER)

    @property
    def source(self) -> str:
        """The source record's position: the identity of what was dead-lettered."""
        topic, partition, offset = (
            self.source_topic,
            self.header(SOURCE_PARTITION_HEADER),
            self.header(SOURCE_OFFSET_HEADER),
        )
        if topic is None or partition is None or offset is None:
            return f"{self.topic}@{self.position}"
        return f"{topic}[{partition}]@{offset}"

    @property
    def at(self) -> datetime:
        stamp = self.header(AT_HEADER)
        if stamp:
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(stamp)
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def size(self) -> int:
        stated = self.header(SIZE_HEADER)
        return int(stated) if stated and stated.isdigit() else len(self.value or b"")

    @property
    def omitted(self) -> bool:
        return self.header(OMITTED_HEADER) == "true"

    def replay_headers(self) -> list[tuple[str, bytes]]:
        kept = [(k, v) for k, v in self.headers if not k.startswith(PREFIX) and k != REPLAYED_FROM_HEADER]
        return [*kept, (REPLAYED_FROM_HEADER, f"{self.topic}:{self.position}".encode())]
