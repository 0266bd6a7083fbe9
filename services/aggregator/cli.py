"""`python -m services.aggregator [serve|rebuild|replay]`: read settings (fail fast), then act."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
from tqdm import tqdm

from services.aggregator import maintenance
from services.aggregator.bootstrap import SERVICE, build_app
from services.aggregator.config import AggregatorSettings
from services.aggregator.gc_tuning import tune_gc
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
    chunk: Annotated[int, typer.Option(min=1, help="(job site, day) groups per transaction.")] = 2000,
    workers: Annotated[int, typer.Option(min=1, help="Transactions at a time in each process.")] = 2,
    processes: Annotated[
        int, typer.Option(min=1, help="Processes sharing the accounts (default: one per core).")
    ] = os.cpu_count() or 1,
) -> None:
    """Recompute every entry from the stored timelogs (publish state is kept)."""
    tune_gc()
    settings = load_settings(AggregatorSettings)
    dsn, schema = settings.database_url.get_secret_value(), settings.db_schema
    asyncio.run(db.migrate(dsn, schema, "services.aggregator.migrations"))
    groups = asyncio.run(maintenance.on_pool(dsn, schema, lambda pool: maintenance.count_groups(pool, account)))
    shares = maintenance.share_accounts(groups, processes)
    # tqdm shows the rate and the time left ("[elapsed<remaining, groups/s]")
    with tqdm(total=sum(groups.values()), unit="group", desc="rebuild", mininterval=1.0) as bar:

        def advance(groups_done: int) -> None:
            bar.update(groups_done)

        if len(shares) <= 1:
            accounts = sorted(groups)
            done = asyncio.run(
                maintenance.on_pool(
                    dsn, schema, lambda pool: maintenance.rebuild(pool, accounts, chunk, advance, workers), workers + 1
                )
            )
        else:
            jobs = [maintenance.RebuildJob(dsn, schema, share, chunk, workers) for share in shares]
            try:
                done = maintenance.rebuild_in_processes(jobs, advance)
            except maintenance.RebuildFailed as failed:
                bar.close()
                typer.echo(f"rebuild failed: {failed}", err=True)
                raise typer.Exit(1) from None
    asyncio.run(maintenance.on_pool(dsn, schema, maintenance.refresh_statistics))
    typer.echo(f"rebuilt {done} (job site, day) groups in {len(shares)} process(es)")


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
