"""The compose demo's sign-in stand-in (`python -m sandbox.issuer serve`) as a real process on a free port."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from devstack.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_issuer(startup_timeout_s: float = 30.0) -> Iterator[int]:
    """Start the issuer, wait until `/health` answers, yield its port; stop it on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.issuer", "serve", "--port", str(port)], cwd=ROOT)
    try:
        deadline = time.monotonic() + startup_timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
