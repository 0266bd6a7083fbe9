"""`python -m services.aggregator [serve|rebuild|replay]`: read settings (fail fast), then act."""

from __future__ import annotations

import asyncio
import gc
from typing import Annotated

import typer
from tqdm import tqdm

from services.aggregator import maintenance
from services.aggregator.bootstrap import SERVICE, build_app
from services.aggregator.config import AggregatorSettings
from shared import db
from shared.app import serve as serve_app
from shared.logs import configure_logging
from shared.settings import load_settings

cli = typer.Typer(add_completion=False, help="The aggregator service and its maintenance commands.")


@cli.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    """Serve the aggregator when no command is given."""
    if ctx.invoked_subcommand is None:
        serve()


GC_THRESHOLD = (50_000, 50, 100)
"""A batch allocates hundreds of thousands of short-lived, acyclic objects (refs, totals, states, rows): with
Python's default threshold (700) the cyclic collector runs thousands of times a batch and took half of its Python
time. Collected less often, the same garbage goes by reference counting anyway."""


def tune_gc() -> None:
    gc.freeze()  # what startup made lives as long as the process: never scanned again
    gc.set_threshold(*GC_THRESHOLD)


@cli.command()
def serve() -> None:
    """Consume events and serve /health and /asyncapi."""
    tune_gc()
    settings = load_settings(AggregatorSettings)
    configure_logging("aggregator", settings.log_level, settings.log_format, settings.log_levels)
    serve_app(build_app(settings), settings.http_host, settings.http_port, settings.log_level)


@cli.command()
def rebuild(
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    chunk: Annotated[int, typer.Option(min=1, help="(job site, day) groups per transaction.")] = 1000,
    workers: Annotated[int, typer.Option(min=1, help="Transactions at a time.")] = 2,
) -> None:
    """Recompute every entry from the stored timelogs (publish state is kept)."""
    tune_gc()
    settings = load_settings(AggregatorSettings)

    async def run() -> int:
        dsn = settings.database_url.get_secret_value()
        await db.migrate(dsn, settings.db_schema, "services.aggregator.migrations")
        pool = await db.create_pool(dsn, settings.db_schema, max_size=workers + 1)
        try:
            sizes = await maintenance.count_groups(pool, account)
            # tqdm shows the rate and the time left ("[elapsed<remaining, groups/s]")
            with tqdm(total=sum(sizes.values()), unit="group", desc="rebuild", mininterval=1.0) as bar:

                def advance(groups: int) -> None:
                    bar.update(groups)

                return await maintenance.rebuild(pool, account, chunk, advance, workers)
        finally:
            await pool.close()

    done = asyncio.run(run())
    typer.echo(f"rebuilt {done} (job site, day) groups")


@cli.command()
def replay() -> None:
    """Reset the aggregator's timelog consumer group to the beginning of the topic (stop the service first)."""
    settings = load_settings(AggregatorSettings)
    offsets = asyncio.run(
        maintenance.replay_from_beginning(
            settings.kafka_bootstrap_servers, settings.topics.timelogs, f"{settings.topic_prefix}{SERVICE}"
        )
    )
    typer.echo(f"{settings.topics.timelogs}: consumer group reset to {offsets}; start the aggregator to replay")


def main() -> None:
    cli()
