"""The whole system as `make run` starts it (`python -m devstack run`), for the e2e tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from devstack.ports import free_port
from shared.provision import Layout
from shared.topics import Topics
from tests.support.database import drop_layout

ROOT = Path(__file__).resolve().parents[2]


class System:
    def __init__(self, proc: subprocess.Popen[str], topics: Topics) -> None:
        self.proc = proc
        self.topics = topics
        self.lines: list[str] = []

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            if line:
                self.lines.append(line)
                if match := re.search(pattern, line):
                    return match
            elif self.proc.poll() is not None:
                break
        raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(self.lines[-60:])}")

    def ready(self, timeout_s: float = 120) -> tuple[str, str]:
        """(gateway base URL, Procore sandbox URL) once `Dashboard:` is printed."""
        dashboard = self.wait_for(r"^Dashboard: (http://\S+)", timeout_s).group(1)
        sandbox = next(m.group(1) for line in self.lines if (m := re.search(r"Procore sandbox: (\S+)", line)))
        return dashboard.split("/dev/login")[0], sandbox

    def child_pids(self) -> list[int]:
        return [int(m.group(1)) for line in self.lines if (m := re.search(r"started \w+ \(pid (\d+)\)", line))]


@contextlib.contextmanager
def running_system(
    kafka: str, dsn: str, unique: str, demo: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[System]:
    """Start the system on the session's broker and database (`dsn`: the administrator's) with its own topics,
    schemas and roles; `demo`: seed the sandbox and the demo account as `make run` does."""
    schema_prefix = f"e2e_{unique}_"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "DATABASE_URL": dsn,
        "TOPIC_PREFIX": f"{unique}.",
        "DEVSTACK_SCHEMA_PREFIX": schema_prefix,
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    env.pop("PROCORE_BASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "run", *([] if demo else ["--no-demo"]), "--gateway-port", str(free_port())],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield System(proc, Topics(f"{unique}."))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        # devstack provisioned the roles and schemas of this prefix (with `dsn` as the administrator)
        asyncio.run(drop_layout(dsn, Layout(schema_prefix)))
