"""The gateway as several processes on one port (`HTTP_WORKERS`, `services/gateway/workers.py`), run as operators run
it (`python -m services.gateway`): connections spread over the workers, a worker that dies is started again, the
workers take each other's live tickets, SIGTERM stops them all, a port another program holds fails at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import httpx
import psutil
import pytest

from devstack.ports import free_port
from services.gateway.tokens import Principal, issue_dev_token
from tests.support.database import ProvisionedDatabase

pytestmark = pytest.mark.integration

CONNECTIONS = 40
SECRET = "s" * 32
AUTH = {"Authorization": f"Bearer {issue_dev_token(Principal('u1', 'acc-1'), SECRET, 600)}"}


def gateway_env(kafka: str, database: ProvisionedDatabase, unique: str, port: int, workers: int) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.isupper() or k in ("PATH", "HOME", "LANG")}
    return {
        **inherited,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "DATABASE_URL": database.dsn("gateway"),
        "AGGREGATOR_SCHEMA": database.schema("aggregator"),
        "MAPPING_SCHEMA": database.schema("mapping"),
        "TOPIC_PREFIX": f"{unique}.",
        "ENVIRONMENT": "development",
        "JWT_SECRET": SECRET,
        "HTTP_PORT": str(port),
        "HTTP_WORKERS": str(workers),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
    }


@contextmanager
def gateway(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            for process in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
                with suppress(psutil.NoSuchProcess):
                    process.kill()
        proc.communicate(timeout=30)


def workers_of(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """The supervisor's children that listen (the spawn start method adds a resource tracker that does not)."""
    workers = []
    for child in psutil.Process(proc.pid).children():
        try:
            if any(c.status == psutil.CONN_LISTEN for c in child.net_connections("tcp")):
                workers.append(child)
        except psutil.NoSuchProcess:
            continue  # a worker that died just now
    return workers


def wait_ready(url: str, proc: subprocess.Popen[str], workers: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the gateway stopped: {proc.communicate()[0]}"
        try:
            ready = httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and len(workers_of(proc)) == workers:
            return
        time.sleep(0.2)
    raise AssertionError(f"{workers} workers not ready in 60 s")


def listening_sockets(worker: psutil.Process, port: int) -> set[str]:
    """The kernel's ids (`socket:[inode]`) of the sockets `worker` listens on at `port`."""
    fds = [c.fd for c in worker.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    return {os.readlink(f"/proc/{worker.pid}/fd/{fd}") for fd in fds}


def served_by(proc: subprocess.Popen[str], port: int) -> Counter[int]:
    """How many established connections to `port` each worker holds, by pid."""
    return Counter(
        {
            worker.pid: sum(
                1 for c in worker.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
            )
            for worker in workers_of(proc)
        }
    )


def worker_of(client: httpx.Client, proc: subprocess.Popen[str], port: int) -> int:
    """The pid of the worker holding `client`'s connection (matched by the client's own port)."""
    response = client.get("/health/live")
    client_port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    for worker in workers_of(proc):
        for c in worker.net_connections("tcp"):
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port and c.raddr.port == client_port:
                return worker.pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def test_connections_spread_over_the_workers_and_a_dead_worker_is_replaced(
    kafka_bootstrap: str, database: ProvisionedDatabase, unique: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with gateway(gateway_env(kafka_bootstrap, database, unique, port, workers=2)) as proc:
        wait_ready(url, proc, workers=2)
        # Each worker accepts on a socket of its own (`uvicorn --workers` shares one between them).
        first, second = (listening_sockets(worker, port) for worker in workers_of(proc))
        assert len(first) == len(second) == 1
        assert first != second
        # Keep-alive connections opened in a burst, as a browser's or a load balancer's: each stays with the worker
        # that accepted it.
        clients = [
            httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_connections=1)) for _ in range(CONNECTIONS)
        ]
        try:
            for client in clients:
                assert client.get("/health/live").status_code == 200
            spread = served_by(proc, port)
            assert sum(spread.values()) == CONNECTIONS, spread
            assert len(spread) == 2, spread
            # The kernel hashes each connection to one of the two sockets: fewer than 8 of 40 on one side happens
            # about 4 times in 100,000 runs by chance.
            assert min(spread.values()) >= 8, spread

            victim = next(iter(spread))
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while {w.pid for w in workers_of(proc)} & {victim} or len(workers_of(proc)) < 2:
                assert time.monotonic() < deadline, "the dead worker was not replaced"
                time.sleep(0.2)
            wait_ready(url, proc, workers=2)
            # Every client still gets answers: those whose connection died open a new one.
            for client in clients:
                assert client.get("/health/live").status_code == 200

            # Without INTERNAL_API_TOKEN, a live ticket one worker signed is taken by the other (one key for all).
            by_worker = {worker_of(client, proc, port): client for client in clients}
            assert len(by_worker) == 2, by_worker
            one, other = by_worker.values()
            for minter, redeemer in ((one, other), (other, one)):
                ticket = minter.post("/api/live/ticket", headers=AUTH).json()["ticket"]
                with redeemer.stream("GET", "/api/live", params={"ticket": ticket}) as live:
                    assert live.status_code == 200
        finally:
            for client in clients:
                client.close()

        children = workers_of(proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        _gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
        output = proc.communicate()[0]
        assert "2 workers on 127.0.0.1" in output, output
        assert f"exited with {-signal.SIGKILL}" in output, output


def test_a_port_another_program_holds_stops_the_gateway_at_once(
    kafka_bootstrap: str, database: ProvisionedDatabase, unique: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with gateway(gateway_env(kafka_bootstrap, database, unique, port, workers=2)) as proc:
            assert proc.wait(30) == 1
            output = proc.communicate()[0]
    assert f"HTTP_PORT {port}" in output, output
    assert "Address already in use" in output, output
    assert "Traceback" not in output, output


def test_workers_that_keep_dying_at_start_stop_the_gateway(
    kafka_bootstrap: str, database: ProvisionedDatabase, unique: str
) -> None:
    env = gateway_env(kafka_bootstrap, database, unique, free_port(), workers=2)
    env["DATABASE_URL"] = "postgresql://gateway@127.0.0.1:1/nowhere"  # nothing listens there: every start fails
    with gateway(env) as proc:
        assert proc.wait(60) == 1
        output = proc.communicate()[0]
    assert "keep dying at start (3 in a row): stopping" in output, output
