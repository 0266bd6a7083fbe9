"""`python -m shared.dead_letters list|replay`: the operator's command line over the dead-letter topics."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from tqdm import tqdm

from shared.dead_letters.letters import SERVICES, DeadLetter
from shared.dead_letters.replay import read_dead_letters, read_replayed, replay
from shared.dead_letters.selection import Selection, human_size, parse_duration, parse_positions, plan_replay, table
from shared.kafka_security import KafkaConnectionSettings
from shared.topics import Topics


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
