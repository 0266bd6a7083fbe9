"""Reusable helpers to run the Procore sandbox in-process on a free 127.0.0.1 port.

    from tests.sandbox_fixtures import run_sandbox

    with run_sandbox() as base_url:          # or run_sandbox(state) to keep a handle on SandboxState
        httpx.post(f"{base_url}/_sandbox/companies", json={...})

The server runs under uvicorn in a daemon thread with its own event loop: usable from sync and async tests.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from sandbox.procore import SandboxState, create_app


@contextmanager
def run_sandbox(state: SandboxState | None = None, *, startup_timeout_s: float = 10.0) -> Iterator[str]:
    """Start the sandbox; yield its base URL (e.g. http://127.0.0.1:54321); stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(state),
        log_level="warning",
        timeout_graceful_shutdown=1,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="procore-sandbox")
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("Procore sandbox did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
