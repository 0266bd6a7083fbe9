"""`python -m services.gateway`: read settings (fail fast), then serve the HTTP app."""

from __future__ import annotations

import functools
import logging
import secrets
import socket
import sys

import uvicorn
from fastapi import FastAPI

from services.gateway.bootstrap import build_app
from services.gateway.config import GatewaySettings
from services.gateway.workers import Supervisor
from shared.gc_tuning import tune_gc
from shared.logs import configure_logging
from shared.settings import load_settings

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 10
"""How long requests in flight get to finish when the gateway stops."""


class GatewayServer(uvicorn.Server):
    """uvicorn waits for every open response before it stops: live-update streams never end by themselves, so they
    are ended first (each gets `bye` and reconnects)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        live = getattr(self._app.state, "live", None)
        if live is not None:
            live.close_streams()
        await super().shutdown(sockets)


def server(app: FastAPI, host: str, port: int, log_level: str) -> GatewayServer:
    # log_config=None, log_level=None: uvicorn logs through the handler and levels shared.logs set.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=None,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return GatewayServer(config, app)


GC_THRESHOLD = (100_000, 50, 100)
"""Each request allocates thousands of short-lived objects (a week view's rows and cells, a cell's details); with
Python's default threshold (700) the cyclic collector ran every few requests, and each of its full collections,
scanning every object the app holds, stalled the worker's waiting requests for 90 to 105 ms. Measured under 500
requests/s of mixed reads at 10 M timelogs (`tests/bench/RESULTS.md`): 16 full collections in a 20 s run across two
workers, 2.2 s of collecting in all; with this threshold, none."""


def _settings() -> GatewaySettings:
    settings = load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level, settings.log_format, settings.log_levels)
    return settings


def _app(settings: GatewaySettings, instance_key: bytes | None = None) -> FastAPI:
    app = build_app(settings, instance_key=instance_key)
    tune_gc(GC_THRESHOLD)
    return app


def create_app() -> FastAPI:
    """The app from the environment, for `uvicorn --factory services.gateway.entrypoint:create_app` (one process;
    several worker processes are `HTTP_WORKERS` with `python -m services.gateway`)."""
    return _app(_settings())


def serve_on(sock: socket.socket, instance_key: bytes) -> None:
    """One worker of several (`workers.Supervisor`): the app from the environment, served on its own socket.
    `instance_key`: the key the supervisor made for all its workers (tickets and previews, without
    INTERNAL_API_TOKEN)."""
    settings = _settings()
    app = _app(settings, instance_key)
    server(app, settings.http_host, settings.http_port, settings.log_level).run(sockets=[sock])


def main() -> None:
    settings = _settings()
    if settings.http_workers == 1:
        server(_app(settings), settings.http_host, settings.http_port, settings.log_level).run()
        return
    if settings.rate_limit_storage.startswith("memory://"):
        log.warning(
            "RATE_LIMIT_STORAGE=memory:// counts per worker: with %d workers an account may send up to %d times each "
            "command limit; share the counters through redis:// or memcached://",
            settings.http_workers,
            settings.http_workers,
        )
    try:
        supervisor = Supervisor(
            functools.partial(serve_on, instance_key=secrets.token_bytes(32)),
            settings.http_host,
            settings.http_port,
            settings.http_workers,
            GRACEFUL_SHUTDOWN_S + 5,
        )
    except OSError as error:
        log.error("cannot serve HTTP_PORT %d on %s: %s", settings.http_port, settings.http_host, error.strerror)
        sys.exit(1)
    log.info("gateway: %d workers on %s:%d", settings.http_workers, settings.http_host, supervisor.port)
    sys.exit(supervisor.run())
