"""`python -m shared.produce timelogs|reference [FILE]`: send MobiClocks core's events from JSON lines, as it would.

For trying the system by hand (docker compose, a staging cluster): every line is checked against the event
contract first (shared/events/) and nothing is sent unless all are valid; each event gets the key MobiClocks
core gives it (`account_id:job_site_id` for timelogs, `account_id` for reference entities), so one job site's
changes stay in order. Connection: KAFKA_BOOTSTRAP_SERVERS, TOPIC_PREFIX and the KAFKA_SECURITY_PROTOCOL /
KAFKA_SASL_* settings of the `mobiclocks-core` principal (deploy/README.md, "Send events from your machine").
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.events import ReferenceEvent, TimelogEvent
from shared.kafka_security import KafkaConnectionSettings
from shared.topics import Topics

DELETED = "timelog.deleted"


class Stream(StrEnum):
    TIMELOGS = "timelogs"
    REFERENCE = "reference"


_CONTRACTS: dict[Stream, TypeAdapter[BaseModel]] = {
    Stream.TIMELOGS: TypeAdapter(TimelogEvent),
    Stream.REFERENCE: TypeAdapter(ReferenceEvent),
}


class InvalidLines(ValueError):
    """Lines that do not hold a valid event: (line number, what is wrong)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"line {n}: {problem}" for n, problem in problems))
        self.problems = problems


def parse_events(stream: Stream, lines: Iterable[str]) -> list[tuple[bytes, BaseModel]]:
    """Every non-empty line as (key, event of `stream`), or InvalidLines naming each bad one.

    A `timelog.deleted` line may carry the `job_site_id` the timelog was on (not part of the event): it keys the
    delete like the timelog's upserts, so the delete stays behind them."""
    events: list[tuple[bytes, BaseModel]] = []
    problems: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append((n, f"not JSON: {error.msg}"))
            continue
        job_site = raw.pop("job_site_id", None) if isinstance(raw, dict) and raw.get("type") == DELETED else None
        try:
            event = _CONTRACTS[stream].validate_python(raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "event"
            problems.append((n, f"{where}: {first['msg']}"))
            continue
        events.append((key_of(event, job_site), event))
    if problems:
        raise InvalidLines(problems)
    return events


def key_of(event: BaseModel, job_site_id: str | None = None) -> bytes:
    """`account_id:job_site_id` for a timelog event, `account_id` for a reference event."""
    account = str(getattr(event, "account_id", ""))
    job_site = getattr(event, "job_site_id", None) or job_site_id
    return f"{account}:{job_site}".encode() if job_site else account.encode()


async def send(
    bootstrap: str, topic: str, events: Sequence[tuple[bytes, BaseModel]], connection: KafkaConnectionSettings
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **connection.client_options())
    await producer.start()
    try:
        for key, event in events:
            await producer.send(topic, event.model_dump_json().encode(), key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return len(events)


cli = typer.Typer(add_completion=False, help=__doc__.splitlines()[0] if __doc__ else None)


@cli.command()
def main(
    stream: Annotated[Stream, typer.Argument(help="Which of MobiClocks core's topics.")],
    source: Annotated[Path | None, typer.Argument(help="JSON lines file (default: standard input).")] = None,
    bootstrap: Annotated[str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS")] = "127.0.0.1:9092",
    prefix: Annotated[str, typer.Option(envvar="TOPIC_PREFIX", help="Topic prefix.")] = "",
) -> None:
    """Check every line against the event contract, then send them all (or nothing)."""
    lines = source.read_text().splitlines() if source is not None else sys.stdin.read().splitlines()
    try:
        events = parse_events(stream, lines)
    except InvalidLines as error:
        for n, problem in error.problems:
            typer.echo(f"produce: line {n}: {problem}", err=True)
        raise typer.Exit(2) from None
    topics = Topics(prefix)
    topic = topics.timelogs if stream is Stream.TIMELOGS else topics.reference
    sent = asyncio.run(send(bootstrap, topic, events, KafkaConnectionSettings()))
    typer.echo(f"produce: sent {sent} events to {topic}")


if __name__ == "__main__":
    cli()
