"""Dead letters: what they carry, and `python -m shared.dead_letters list|replay` to act on them.

A dead letter is the original record (value, key, headers) sent to `<service>.dead-letter`
with `x-dead-letter-*` headers: the reason, the source topic/partition/offset, the service,
when, and the size. A record too large to forward is replaced by a small reference (JSON:
reason, source, size, sha256, the first bytes) with `x-dead-letter-payload-omitted: true`;
such a dead letter can be listed but not replayed.

Replay sends chosen dead letters back to their source topic with their original value, key
and headers (minus the `x-dead-letter-*` ones, plus `x-replayed-from`), and records each in
`<dead-letter topic>.replayed`, keyed by the source position, so replaying again (or a second
dead letter of the same source record) sends nothing. See docs/dead-letters.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from tqdm import tqdm

from shared.kafka_security import KafkaConnectionSettings
from shared.topics import REPLAY_MARKER_SUFFIX, Topics

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


# --- what a dead letter carries (pure) ----------------------------------------------------------


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


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on."""

    reason_contains: str | None = None
    source_topic: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    positions: frozenset[str] = field(default_factory=frozenset)
    """`partition:offset` in the dead-letter topic; empty: any."""
    limit: int | None = None

    def matches(self, letter: DeadLetter, now: datetime) -> bool:
        age = now - letter.at
        return (
            (self.reason_contains is None or self.reason_contains.lower() in letter.reason.lower())
            and (self.source_topic is None or letter.source_topic == self.source_topic)
            and (self.older_than is None or age >= self.older_than)
            and (self.newer_than is None or age <= self.newer_than)
            and (not self.positions or letter.position in self.positions)
        )

    def apply(self, letters: Iterable[DeadLetter], now: datetime) -> list[DeadLetter]:
        chosen = [letter for letter in letters if self.matches(letter, now)]
        return chosen[: self.limit] if self.limit is not None else chosen


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `3d`, `1w` → a timedelta."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 3d)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_positions(text: str | None) -> frozenset[str]:
    """`0:12,0:13,2:5` → {"0:12", "0:13", "2:5"}."""
    if not text:
        return frozenset()
    found = set()
    for part in text.split(","):
        partition, sep, offset = part.strip().partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"not a partition:offset: {part.strip()!r}")
        found.add(f"{int(partition)}:{int(offset)}")
    return frozenset(found)


def human_age(age: timedelta) -> str:
    seconds = max(int(age.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def table(letters: Sequence[DeadLetter], replayed: set[str], now: datetime, reason_width: int = 70) -> str:
    """A readable, aligned table: one dead letter per line."""
    header = ("SERVICE", "POSITION", "AGE", "SIZE", "SOURCE", "REPLAYED", "REASON")
    rows = [
        (
            letter.service,
            letter.position,
            human_age(now - letter.at),
            human_size(letter.size) + (" (omitted)" if letter.omitted else ""),
            letter.source,
            "yes" if letter.source in replayed else "",
            _shorten(letter.reason, reason_width),
        )
        for letter in letters
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return "\n".join(line.rstrip() for line in lines)


def _shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# --- reading and replaying (I/O) ----------------------------------------------------------------


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


@dataclass
class ReplayReport:
    sent: list[DeadLetter] = field(default_factory=list)
    already: list[DeadLetter] = field(default_factory=list)
    omitted: list[DeadLetter] = field(default_factory=list)


def plan_replay(chosen: Sequence[DeadLetter], replayed: set[str]) -> ReplayReport:
    """What a replay would do: send each source record once; never what was sent before or was omitted."""
    plan = ReplayReport()
    planned: set[str] = set()
    for letter in chosen:
        if letter.omitted:
            plan.omitted.append(letter)
        elif letter.source in replayed or letter.source in planned:
            plan.already.append(letter)
        else:
            planned.add(letter.source)
            plan.sent.append(letter)
    return plan


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


# --- the command line ---------------------------------------------------------------------------


class ToolSettings(KafkaConnectionSettings):
    """The same environment variables as the services (with ACLs: the `operator` principal, deploy/README.md)."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = Field(min_length=1)
    topic_prefix: str = ""


cli = typer.Typer(add_completion=False, no_args_is_help=True, help="List and replay dead letters of the services.")

ServiceOption = Annotated[
    list[str] | None,
    typer.Option("--service", "-s", help=f"Only this service (repeatable). Default: {', '.join(SERVICES)}."),
]
ReasonOption = Annotated[str | None, typer.Option(help="Only dead letters whose reason contains this (any case).")]
SourceOption = Annotated[str | None, typer.Option(help="Only dead letters from this source topic (full name).")]
OlderOption = Annotated[str | None, typer.Option(help="Only dead letters older than this (90s, 15m, 2h, 3d).")]
NewerOption = Annotated[str | None, typer.Option(help="Only dead letters newer than this (90s, 15m, 2h, 3d).")]
LimitOption = Annotated[int | None, typer.Option(min=1, help="At most this many (oldest first).")]


def _settings() -> ToolSettings:
    from shared.settings import load_settings

    return load_settings(ToolSettings)


def _selection(
    reason_contains: str | None,
    source_topic: str | None,
    older_than: str | None,
    newer_than: str | None,
    limit: int | None,
    offsets: str | None = None,
) -> Selection:
    try:
        return Selection(
            reason_contains=reason_contains,
            source_topic=source_topic,
            older_than=parse_duration(older_than) if older_than else None,
            newer_than=parse_duration(newer_than) if newer_than else None,
            positions=parse_positions(offsets),
            limit=limit,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None


def _topics(settings: ToolSettings, services: list[str] | None) -> list[str]:
    topics = Topics(settings.topic_prefix)
    return [topics.dead_letter(s) for s in services or SERVICES]


async def _gather(settings: ToolSettings, topics: list[str]) -> list[tuple[str, list[DeadLetter], set[str]]]:
    found = []
    bootstrap = settings.kafka_bootstrap_servers
    for topic in topics:
        letters = await read_dead_letters(bootstrap, topic, settings)
        found.append((topic, letters, await read_replayed(bootstrap, topic, settings) if letters else set()))
    return found


@cli.command("list")
def list_command(
    service: ServiceOption = None,
    reason_contains: ReasonOption = None,
    source_topic: SourceOption = None,
    older_than: OlderOption = None,
    newer_than: NewerOption = None,
    limit: LimitOption = None,
) -> None:
    """Show dead letters: service, position (partition:offset), age, size, source, whether replayed, reason."""
    settings = _settings()
    selection = _selection(reason_contains, source_topic, older_than, newer_than, limit)
    now = datetime.now(UTC)
    found = asyncio.run(_gather(settings, _topics(settings, service)))
    shown = 0
    for topic, letters, replayed in found:
        chosen = selection.apply(letters, now)
        if not chosen:
            continue
        typer.echo(f"{topic}: {len(chosen)} of {len(letters)}")
        typer.echo(table(chosen, replayed, now))
        typer.echo("")
        shown += len(chosen)
    if not shown:
        typer.echo("no dead letters match")


@cli.command("replay")
def replay_command(
    service: ServiceOption = None,
    reason_contains: ReasonOption = None,
    source_topic: SourceOption = None,
    older_than: OlderOption = None,
    newer_than: NewerOption = None,
    limit: LimitOption = None,
    offsets: Annotated[
        str | None,
        typer.Option(help="Only these dead letters: partition:offset in the dead-letter topic, e.g. 0:12,1:3."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be sent; send nothing.")] = False,
) -> None:
    """Send chosen dead letters back to their source topic, each source record once (fix the cause first)."""
    settings = _settings()
    selection = _selection(reason_contains, source_topic, older_than, newer_than, limit, offsets)
    now = datetime.now(UTC)
    bootstrap = settings.kafka_bootstrap_servers
    for topic, letters, replayed in asyncio.run(_gather(settings, _topics(settings, service))):
        plan = plan_replay(selection.apply(letters, now), replayed)
        if not (plan.sent or plan.already or plan.omitted):
            continue
        for letter in plan.omitted:
            typer.echo(
                f"{topic} {letter.position}: payload omitted ({human_size(letter.size)}, too large to keep): "
                "cannot be replayed; find the original by its source position and sha256",
                err=True,
            )
        if plan.already:
            typer.echo(f"{topic}: {len(plan.already)} already replayed, skipped")
        if dry_run:
            typer.echo(f"{topic}: would replay {len(plan.sent)}")
            if plan.sent:
                typer.echo(table(plan.sent, replayed, now))
            continue
        if plan.sent:
            with tqdm(total=len(plan.sent), desc=f"replay {topic}", unit="msg", file=sys.stderr) as bar:
                asyncio.run(replay(bootstrap, topic, plan.sent, bar, settings))
        typer.echo(f"{topic}: replayed {len(plan.sent)}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
