"""`python -m sandbox.procore --host 127.0.0.1 --port 8090`"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

import uvicorn

from sandbox.procore.app import create_app
from shared.logs import LogFormat, configure_logging


class _AnnouncingServer(uvicorn.Server):
    """Prints the ready line once the socket is bound and the app has started."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"Procore sandbox listening on http://{self.config.host}:{self.config.port}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.procore", description="Procore API sandbox")
    parser.add_argument("--host", default=os.environ.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8090")))
    parser.add_argument(
        "--log-level", default=os.environ.get("SANDBOX_LOG_LEVEL") or os.environ.get("LOG_LEVEL") or "INFO"
    )
    args = parser.parse_args(argv)
    log_format: LogFormat = "json" if os.environ.get("LOG_FORMAT", "text").lower() == "json" else "text"
    configure_logging("procore-sandbox", args.log_level, log_format, os.environ.get("LOG_LEVELS", ""))
    # log_config=None: uvicorn's lines go through the handler configure_logging installed.
    options: dict[str, Any] = {"log_level": None, "timeout_graceful_shutdown": 2, "log_config": None}
    _AnnouncingServer(uvicorn.Config(create_app(), host=args.host, port=args.port, **options)).run()


if __name__ == "__main__":
    main()
