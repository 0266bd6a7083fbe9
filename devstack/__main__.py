"""``python -m devstack …``: run pieces of the local infrastructure by hand.

Commands: ``run`` (the whole system), ``docs`` (contract documents), ``broker``, ``postgres``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from .broker import LocalBroker, default_log_dir
from .postgres import LocalPostgres

app = typer.Typer(help="Local infrastructure for development and tests.", no_args_is_help=True)


def state_dir() -> Path:
    """``$DEVSTACK_DIR`` or ``.devstack`` (git-ignored): logs and persistent data live here."""
    return Path(os.environ.get("DEVSTACK_DIR", ".devstack"))


@contextmanager
def sigterm_as_keyboard_interrupt() -> Iterator[None]:
    """Treat SIGTERM (and SIGINT, even if inherited as ignored) like Ctrl-C so children get cleaned up."""

    def _handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until_interrupted(is_alive: Callable[[], bool], what: str) -> int:
    """Sleep until Ctrl-C/SIGTERM (→ 0) or until ``is_alive()`` turns false (→ 1)."""
    try:
        while is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        typer.echo(f"stopping {what}…", err=True)
        return 0
    typer.echo(f"{what} exited unexpectedly", err=True)
    return 1


@app.command()
def broker(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0: pick a free one).")] = 0,
    storage: Annotated[
        str, typer.Option(help="'memory', 's3' (local moto emulator) or a Tansu storage URL.")
    ] = "memory",
    log_dir: Annotated[Path | None, typer.Option(help="Log directory (default .devstack/logs).")] = None,
) -> None:
    """Start a local Kafka-protocol broker (Tansu) and print its bootstrap address; Ctrl-C stops it."""
    code = 0
    with sigterm_as_keyboard_interrupt():
        try:
            with LocalBroker(port=port or None, storage=storage, log_dir=log_dir or default_log_dir()) as b:
                typer.echo(f"KAFKA_BOOTSTRAP_SERVERS={b.bootstrap_servers}")
                typer.echo(
                    f"broker pid {b.pid}, storage {b.storage_url}, ready in {b.started_in or 0.0:.2f}s",
                    err=True,
                )
                typer.echo(f"log: {b.log_path}", err=True)
                code = wait_until_interrupted(b.is_running, "broker")
        except KeyboardInterrupt:
            code = 0
    raise typer.Exit(code)


@app.command()
def postgres(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1 (0: pick a free one).")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="Cluster directory, kept between runs (default .devstack/postgres).")
    ] = None,
    temporary: Annotated[bool, typer.Option("--temporary", help="Throw-away cluster in /tmp.")] = False,
) -> None:
    """Start an embedded PostgreSQL and print its DSN; Ctrl-C stops it."""
    code = 0
    directory = None if temporary else (data_dir or state_dir() / "postgres")
    with sigterm_as_keyboard_interrupt():
        try:
            with LocalPostgres(data_dir=directory, port=port or None, log_dir=default_log_dir()) as pg:
                typer.echo(f"DATABASE_URL={pg.dsn}")
                typer.echo(
                    f"postgres pid {pg.pid}, data {pg.data_dir}, ready in {pg.started_in or 0.0:.2f}s",
                    err=True,
                )
                typer.echo(f"log: {pg.log_path}", err=True)
                code = wait_until_interrupted(pg.is_running, "postgres")
        except KeyboardInterrupt:
            code = 0
    raise typer.Exit(code)


@app.command()
def run(
    storage: Annotated[
        str, typer.Option(help="Broker storage: 'memory' (default, fast, lost on restart) or 's3' (local emulator).")
    ] = "memory",
    demo: Annotated[bool, typer.Option(help="Seed a demo account and Procore company.")] = True,
    gateway_port: Annotated[int, typer.Option(help="Dashboard port (a free one if taken).")] = 8000,
    traces: Annotated[
        bool, typer.Option(help="Start the trace viewer (Phoenix, from `make traces-viewer`) when installed.")
    ] = True,
) -> None:
    """Run the whole system: broker, PostgreSQL, Procore sandbox, all four services (restarted when they crash);
    Ctrl-C stops it."""
    from devstack.run import main as run_main

    raise typer.Exit(run_main(storage, demo, gateway_port, traces))


@app.command()
def docs() -> None:
    """Regenerate docs/contracts: AsyncAPI of each event-driven service and the gateway's OpenAPI."""
    from devstack.docs import write

    for path in write():
        typer.echo(f"wrote {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
