"""`python -m services.mapping [serve|rotate-keys]`: read settings (fail fast), then act (the app: `entrypoint.py`)."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from tqdm import tqdm

from services.mapping import key_rotation
from services.mapping.adapters.procore_links import TokenCipher
from services.mapping.bootstrap import build_app
from services.mapping.config import MappingSettings
from shared import db
from shared.app import serve as serve_app
from shared.logs import configure_logging
from shared.settings import load_settings

cli = typer.Typer(add_completion=False, help="The mapping service and its maintenance commands.")


def _settings() -> tuple[MappingSettings, TokenCipher]:
    settings = load_settings(MappingSettings)
    if not settings.encryption_keys:
        print(
            "MappingSettings: setting TOKEN_ENCRYPTION_KEYS is required but not set (Fernet keys, comma-separated, "
            "the encrypting one first; TOKEN_ENCRYPTION_KEY alone still works)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return settings, TokenCipher(settings.encryption_keys)


@cli.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    """Serve the mapping service when no command is given."""
    if ctx.invoked_subcommand is None:
        serve()


@cli.command()
def serve() -> None:
    """Consume commands and reference events; serve /health and /asyncapi, and the internal API on its own port."""
    settings, _ = _settings()
    configure_logging("mapping", settings.log_level, settings.log_format, settings.log_levels)
    serve_app(build_app(settings), settings.http_host, settings.http_port, settings.log_level)


@cli.command("rotate-keys")
def rotate_keys(
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = 200,
) -> None:
    """Re-encrypt every stored secret (tokens, service-account secrets) under the first key of
    TOKEN_ENCRYPTION_KEYS, bound to its account. Idempotent; safe while the service runs."""
    settings, cipher = _settings()

    async def run() -> key_rotation.RotationReport:
        dsn = settings.database_url.get_secret_value()
        await db.migrate(dsn, settings.db_schema, "services.mapping.migrations")
        pool = await db.create_pool(dsn, settings.db_schema)
        try:
            total = await key_rotation.count_rows(pool)
            with tqdm(total=total, unit="row", desc="rotate-keys", file=sys.stderr) as bar:

                def advance(rows: int) -> None:
                    bar.update(rows)

                return await key_rotation.rotate(pool, cipher, batch_size, advance)
        finally:
            await pool.close()

    report = asyncio.run(run())
    typer.echo(
        f"rotate-keys: {report.rows} rows, {report.rewritten} secrets re-encrypted under the first key, "
        f"{report.current} already were"
    )
    for problem in report.unreadable:
        typer.echo(f"rotate-keys: left as is, cannot be decrypted: {problem}", err=True)
    if report.unreadable:
        raise typer.Exit(1)


def main() -> None:
    cli()
