"""Several gateway processes on one port, each accepting on its own listening socket (`SO_REUSEPORT`).

Why not one socket shared by every worker (`uvicorn --workers`): a worker woken by the shared socket accepts every
connection waiting at that moment, and browsers and load balancers keep their connections open for many requests,
so one worker ended up serving most of them while the other idled (measured under 500 requests/s of mixed reads: one
worker used 17.1 s of CPU, the other 7.4 s, in the same 20 s). With a socket per worker, the kernel hands each new
connection to one of the sockets by a hash of its addresses: connections, and so requests, spread evenly.

The parent only supervises: it binds the port first (without listening) so that a port taken by another program
fails at once and port 0 resolves to one port for all, starts `count` workers, starts a worker again when one
dies, and on SIGTERM or SIGINT stops them all, each finishing its requests in flight.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from types import FrameType

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
"""A worker that died is started again after this long (a crash loop does not spin the machine)."""
MAX_QUICK_EXITS = 3
"""This many workers in a row dying within `QUICK_EXIT_S` of their start stop the gateway (exit 1): something
every worker trips on at startup (the database refuses the role, say) is not mended by starting them again."""
QUICK_EXIT_S = 10.0

Serve = Callable[[socket.socket], None]
"""What a worker runs: serve HTTP on this listening socket until told to stop (SIGTERM, SIGINT)."""


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind host:port with `SO_REUSEPORT` without listening: a port another program holds fails here, port 0 gets a
    number, and the port stays this gateway's while workers come and go. A socket that does not listen is never
    handed connections."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    return sock


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A TCP socket listening on host:port beside the other workers' (`SO_REUSEPORT`): the kernel picks one of the
    listening sockets for each new connection."""
    sock = reserve_port(host, port)
    sock.listen(backlog)
    return sock


def _worker(serve: Serve, host: str, port: int) -> None:
    sock = listening_socket(host, port)
    try:
        serve(sock)
    except KeyboardInterrupt:
        # Ctrl-C in a terminal reaches every process of the group: the worker has finished its requests in flight
        # and stopped (uvicorn raises the signal again once done); nothing to report.
        pass
    finally:
        sock.close()


@dataclass
class _Worker:
    process: SpawnProcess
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Runs `count` processes of `serve`, each on its own socket bound to host:port, until SIGTERM or SIGINT."""

    def __init__(self, serve: Serve, host: str, port: int, count: int, stop_timeout_s: float) -> None:
        self._serve = serve
        self._host = host
        self._count = count
        self._stop_timeout_s = stop_timeout_s
        self._reserved = reserve_port(host, port)
        self.port: int = self._reserved.getsockname()[1]
        self._stopping = False
        self._context = multiprocessing.get_context("spawn")

    def _start(self, index: int) -> _Worker:
        process = self._context.Process(
            target=_worker, args=(self._serve, self._host, self.port), name=f"gateway-worker-{index}", daemon=False
        )
        process.start()
        log.info("gateway worker %d started (pid %s)", index, process.pid)
        return _Worker(process)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status: 0 when told to stop, 1 when workers kept dying at start."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        workers = {index: self._start(index) for index in range(self._count)}
        quick_exits = 0
        status = 0
        try:
            while not self._stopping:
                wait([w.process.sentinel for w in workers.values()], timeout=0.5)
                for index, worker in list(workers.items()):
                    code = worker.process.exitcode
                    if code is None or self._stopping:
                        continue
                    lived = time.monotonic() - worker.started
                    quick_exits = quick_exits + 1 if lived < QUICK_EXIT_S else 0
                    log.error(
                        "gateway worker %d (pid %s) exited with %s after %.0f s", index, worker.process.pid, code, lived
                    )
                    if quick_exits >= MAX_QUICK_EXITS:
                        log.error("gateway workers keep dying at start (%d in a row): stopping", quick_exits)
                        self._stopping = True
                        status = 1
                        break
                    time.sleep(RESTART_DELAY_S)
                    workers[index] = self._start(index)
        finally:
            self._stop([w.process for w in workers.values()])
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._reserved.close()
        return status

    def _stop(self, processes: list[SpawnProcess]) -> None:
        """SIGTERM to every worker (each finishes its requests in flight), SIGKILL to those still running after
        `stop_timeout_s`."""
        for process in processes:
            if process.exitcode is None:
                process.terminate()
        deadline = time.monotonic() + self._stop_timeout_s
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.warning("gateway worker pid %s did not stop in %.0f s: killed", process.pid, self._stop_timeout_s)
                process.kill()
                process.join()
