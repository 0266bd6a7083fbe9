"""Loopback port helpers."""

from __future__ import annotations

import socket
import time

__all__ = ["free_port", "wait_for_tcp"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago (the OS picks it).

    There is an unavoidable race between closing the probe socket and the caller binding
    the port; callers that start servers retry with a fresh port when the bind fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_tcp(host: str, port: int, timeout: float = 10.0, interval: float = 0.05) -> None:
    """Block until a TCP connection to ``host:port`` succeeds; raise ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(1.0, max(timeout, 0.05))):
                return
        except OSError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept TCP connections within {timeout:.1f}s") from (last_error)
        time.sleep(interval)
