"""A small process supervisor for ``make run``: named children, prefixed output, health checks.

* Each child runs in its own session with PDEATHSIG=SIGKILL (Linux), so nothing is orphaned
  even if the supervisor itself is killed with SIGKILL.
* Output (stdout+stderr) is relayed line by line as ``name | line`` (colored on a TTY,
  unless ``NO_COLOR`` is set) and optionally copied to ``<log_dir>/<name>.log``.
* Readiness: poll ``health_url`` until it answers 200 (or a custom async ``ready_check``).
* Stop: reverse start order; SIGTERM to the child's process group, wait, then SIGKILL.
* A child that crashes after it was ready is restarted with capped exponential backoff (1, 2, 4 …
  30 s; back to 1 s once it stayed up a while), and the console says so in one line:
  ``devstack | aggregator exited (signal 9); restarting in 2 s (restart #3)``. A child that never
  becomes ready at start (or has ``restart=False``) stops the run with a clear error and a non-zero
  exit code, as before. SIGINT/SIGTERM stop everything (exit 0); a second signal kills the
  remaining children at once.

Over 400 lines on purpose: the supervisor is one state machine (start, watch, restart, stop over one list of
children and the same stop events); split across modules its parts would reach into each other's state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TextIO

import httpx

from ._proc import child_preexec

__all__ = ["ManagedProcess", "ServiceFailed", "ServiceSpec", "Supervisor", "http_ready", "python_module"]

_COLORS = ("36", "33", "35", "32", "34", "31", "96", "93", "95", "92", "94")
_RESET = "\033[0m"


class ServiceFailed(RuntimeError):
    """A child failed to become ready, or exited while it should have been running."""


def python_module(module: str, *args: str) -> list[str]:
    """argv for ``python -m module args…`` with the current interpreter."""
    return [sys.executable, "-m", module, *args]


async def http_ready(url: str, request_timeout: float = 1.0) -> bool:
    """True if ``GET url`` answers 200."""
    try:
        async with httpx.AsyncClient(timeout=request_timeout, trust_env=False) as client:
            response = await client.get(url)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


@dataclass
class ServiceSpec:
    """How to run one child. ``env`` is layered over ``os.environ`` (unless ``inherit_env=False``)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | str | None = None
    health_url: str | None = None
    ready_check: Callable[[], Awaitable[bool]] | None = None
    ready_timeout: float = 60.0
    stop_timeout: float = 10.0
    inherit_env: bool = True
    restart: bool = True
    """Restart the child when it exits after it was ready (never during start-up)."""
    restart_backoff_max_s: float = 30.0
    restart_reset_after_s: float = 60.0
    """A child that stayed up this long is restarted after 1 s again."""
    console: bool = True
    """Relay its output to the console; False: only to its log file (and the last lines on failure)."""


@dataclass
class ManagedProcess:
    spec: ServiceSpec
    proc: asyncio.subprocess.Process
    started_at: float
    ready_in: float | None = None
    """Seconds the current incarnation took to become ready; None until it is."""
    stopping: bool = False
    restarts: int = 0
    was_ready: bool = False
    backoff_step: int = 0
    recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    pump: asyncio.Task[None] | None = None
    watcher: asyncio.Task[int] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def last_output(self, lines: int = 20) -> str:
        return "\n".join(list(self.recent)[-lines:])


class Supervisor:
    """Start, watch and stop named child processes. Use ``async with Supervisor() as sup``."""

    def __init__(
        self,
        *,
        output: TextIO | None = None,
        color: bool | None = None,
        log_dir: Path | str | None = None,
        prefix_width: int = 0,
        max_line: int = 160,
    ) -> None:
        self.output: TextIO = output if output is not None else sys.stdout
        if color is None:
            isatty = getattr(self.output, "isatty", None)
            color = bool(isatty and isatty()) and "NO_COLOR" not in os.environ
        self.color = color
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.prefix_width = prefix_width
        self.max_line = max_line
        """Console lines of children are cut to this many characters (0: never); `.devstack/logs/` has them whole."""
        self.processes: list[ManagedProcess] = []
        self.failures: list[str] = []
        self._failed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        #: Set by :meth:`run` once every service is ready.
        self.ready = asyncio.Event()
        self._stopping = False
        self._stopping_event = asyncio.Event()
        self._restarts: set[asyncio.Task[None]] = set()
        self._log_files: dict[str, IO[str]] = {}

    # -- output -----------------------------------------------------------------------------------
    def _prefix(self, name: str, index: int) -> str:
        label = f"{name:<{self.prefix_width}} |"
        if self.color:
            return f"\033[{_COLORS[index % len(_COLORS)]}m{label}{_RESET} "
        return label + " "

    def say(self, message: str) -> None:
        """A supervisor status line (``devstack | …``)."""
        label = f"{'devstack':<{self.prefix_width}} |"
        if self.color:
            label = f"\033[1m{label}{_RESET}"
        self._write(f"{label} {message}\n")

    def _write(self, text: str) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.output.write(text)
            self.output.flush()

    def _fit(self, line: str) -> str:
        """A console line stays within `max_line` characters (prefix included); the log file keeps it whole."""
        room = self.max_line - self.prefix_width - 3
        if self.max_line <= 0 or len(line) <= room:
            return line
        return line[: room - 1] + "…"

    async def _pump(self, mp: ManagedProcess, index: int) -> None:
        stream = mp.proc.stdout  # this incarnation's: a restart replaces mp.proc and starts another pump
        assert stream is not None
        prefix = self._prefix(mp.name, index)
        logf = self._log_files.get(mp.name)
        while True:
            try:
                raw = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):  # a line longer than the buffer
                raw = await stream.read(65536)
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            mp.recent.append(line)
            if mp.spec.console:
                self._write(f"{prefix}{self._fit(line)}\n")
            if logf is not None:
                logf.write(line + "\n")
                logf.flush()

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, spec: ServiceSpec) -> ManagedProcess:
        """Spawn ``spec`` and wait until it is ready. Raises :class:`ServiceFailed`."""
        if any(p.name == spec.name for p in self.processes):
            raise ValueError(f"duplicate service name {spec.name!r}")
        self.prefix_width = max(self.prefix_width, len(spec.name), len("devstack"))
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._log_files[spec.name] = (self.log_dir / f"{spec.name}.log").open("a", encoding="utf-8")
        try:
            proc = await self._spawn(spec)
        except OSError as exc:
            logf = self._log_files.pop(spec.name, None)
            if logf is not None:
                logf.close()
            raise ServiceFailed(f"cannot start {spec.name}: {exc}") from exc
        mp = ManagedProcess(spec=spec, proc=proc, started_at=time.monotonic())
        self.processes.append(mp)
        self._attach(mp)
        argv = ["python" if arg == sys.executable else arg for arg in spec.argv]  # the venv's path says nothing new
        self.say(f"started {spec.name} (pid {proc.pid}): {' '.join(argv)}")
        await self._wait_ready(mp)
        return mp

    async def _spawn(self, spec: ServiceSpec) -> asyncio.subprocess.Process:
        env = dict(os.environ) if spec.inherit_env else {}
        env.update(spec.env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=spec.cwd,
            start_new_session=True,
            preexec_fn=child_preexec(),
            limit=1 << 20,
        )

    def _attach(self, mp: ManagedProcess) -> None:
        """Relay the current incarnation's output and watch it."""
        index = self.processes.index(mp)
        mp.pump = asyncio.create_task(self._pump(mp, index), name=f"pump-{mp.name}")
        mp.watcher = asyncio.create_task(self._watch(mp), name=f"watch-{mp.name}")

    async def start_all(self, specs: Iterable[ServiceSpec]) -> list[ManagedProcess]:
        """Start in order, each one ready before the next starts."""
        specs = list(specs)
        self.prefix_width = max([self.prefix_width, len("devstack"), *(len(s.name) for s in specs)])
        return [await self.start(spec) for spec in specs]

    async def _wait_ready(self, mp: ManagedProcess) -> None:
        spec = mp.spec
        check: Callable[[], Awaitable[bool]] | None = spec.ready_check
        if check is None and spec.health_url is not None:
            url = spec.health_url

            async def check() -> bool:
                return await http_ready(url)

        if check is None:
            mp.ready_in = 0.0
            mp.was_ready = True
            return
        deadline = mp.started_at + spec.ready_timeout
        while True:
            if mp.returncode is not None or (mp.watcher is not None and mp.watcher.done()):
                await self._drain(mp)
                raise ServiceFailed(
                    f"{mp.name} exited with code {mp.proc.returncode} before it was ready; last output:\n"
                    f"{mp.last_output()}"
                )
            if await check():
                mp.ready_in = time.monotonic() - mp.started_at
                mp.was_ready = True
                self.say(f"{mp.name} ready in {mp.ready_in:.2f}s")
                return
            if time.monotonic() >= deadline:
                raise ServiceFailed(
                    f"{mp.name} not ready after {spec.ready_timeout:.0f}s "
                    f"({spec.health_url or 'ready_check'}); last output:\n{mp.last_output()}"
                )
            if self._stop_requested.is_set():
                raise ServiceFailed(f"stop requested while waiting for {mp.name}")
            await asyncio.sleep(0.1)

    async def _drain(self, mp: ManagedProcess) -> None:
        if mp.pump is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(mp.pump), 2.0)

    async def _watch(self, mp: ManagedProcess) -> int:
        proc = mp.proc
        code = await proc.wait()
        await self._drain(mp)
        if mp.stopping or self._stopping:
            return code
        if mp.was_ready and mp.spec.restart:
            self._restarts.add(asyncio.create_task(self._restart(mp, code), name=f"restart-{mp.name}"))
            return code
        message = f"{mp.name} (pid {proc.pid}) exited unexpectedly with {_how(code, named=True)}"
        self.failures.append(message)
        self.say(f"ERROR: {message}")
        self._failed.set()
        return code

    async def _restart(self, mp: ManagedProcess, code: int) -> None:
        """Start a crashed child again after a backoff; runs until it is ready again or the run stops."""
        task = asyncio.current_task()
        try:
            spec = mp.spec
            if time.monotonic() - mp.started_at >= spec.restart_reset_after_s:
                mp.backoff_step = 0
            delay = min(spec.restart_backoff_max_s, 2.0**mp.backoff_step)
            mp.backoff_step += 1
            mp.restarts += 1
            self.say(f"{mp.name} exited ({_how(code)}); restarting in {delay:g} s (restart #{mp.restarts})")
            _killpg(mp.pid, signal.SIGKILL)  # leftovers of the dead incarnation's process group
            if await self._stopped_within(delay):
                return
            try:
                proc = await self._spawn(spec)
            except OSError as exc:
                self.say(f"ERROR: cannot restart {mp.name}: {exc}")
                self._restarts.add(asyncio.create_task(self._restart(mp, 1), name=f"restart-{mp.name}"))
                return
            mp.proc, mp.started_at, mp.ready_in = proc, time.monotonic(), None
            self._attach(mp)
            self.say(f"restarted {mp.name} (pid {proc.pid})")
            await self._wait_ready_again(mp)
        finally:
            if task is not None:
                self._restarts.discard(task)

    async def _wait_ready_again(self, mp: ManagedProcess) -> None:
        spec = mp.spec
        check: Callable[[], Awaitable[bool]] | None = spec.ready_check
        if check is None and spec.health_url is not None:
            url = spec.health_url

            async def check() -> bool:
                return await http_ready(url)

        proc = mp.proc
        while check is not None and proc.returncode is None and not self._stopping:
            if await check():
                mp.ready_in = time.monotonic() - mp.started_at
                self.say(f"{mp.name} ready again in {mp.ready_in:.2f}s")
                return
            if await self._stopped_within(0.2):
                return

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as the run is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping_event.wait(), seconds)
        return self._stopping

    def request_stop(self) -> None:
        """Ask :meth:`wait` to return; a second request kills children without grace."""
        if self._stop_requested.is_set():
            self._force.set()
        self._stop_requested.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)

    def remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    async def wait(self) -> int:
        """Block until a stop is requested (→ 0) or a child exits unexpectedly (→ 1)."""
        stop = asyncio.create_task(self._stop_requested.wait())
        failed = asyncio.create_task(self._failed.wait())
        try:
            await asyncio.wait({stop, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            failed.cancel()
        return 1 if self._failed.is_set() else 0

    async def stop_process(self, mp: ManagedProcess, grace: float | None = None) -> int | None:
        """SIGTERM the child's process group, wait ``grace`` s (spec.stop_timeout), then SIGKILL."""
        mp.stopping = True
        pid = mp.pid
        if mp.returncode is None:
            _killpg(pid, signal.SIGTERM)
            wait_task = asyncio.ensure_future(mp.proc.wait())
            force_task = asyncio.ensure_future(self._force.wait())
            done, _ = await asyncio.wait(
                {wait_task, force_task},
                timeout=mp.spec.stop_timeout if grace is None else grace,
                return_when=asyncio.FIRST_COMPLETED,
            )
            force_task.cancel()
            if wait_task not in done:
                self.say(f"{mp.name} did not stop in time: SIGKILL")
                _killpg(pid, signal.SIGKILL)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wait_task, 5.0)
        _killpg(pid, signal.SIGKILL)  # leftovers in the child's group (grandchildren)
        await self._drain(mp)
        if mp.watcher is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(mp.watcher), 2.0)
        logf = self._log_files.pop(mp.name, None)
        if logf is not None:
            logf.close()
        return mp.returncode

    async def stop_all(self) -> None:
        """Stop every child, in reverse start order."""
        self._stopping = True
        self._stopping_event.set()
        # Restarts notice the stop within a moment; let them finish so no child is spawned after this.
        await asyncio.gather(*self._restarts, return_exceptions=True)
        for mp in reversed(self.processes):
            if mp.returncode is None:
                self.say(f"stopping {mp.name} (pid {mp.pid})")
            await self.stop_process(mp)
        for logf in self._log_files.values():
            logf.close()
        self._log_files.clear()

    async def run(self, specs: Iterable[ServiceSpec], *, handle_signals: bool = True) -> int:
        """Start ``specs`` in order, run until a signal or a crash, stop everything. Returns an exit code."""
        if handle_signals:
            self.install_signal_handlers()
        code = 1
        try:
            try:
                await self.start_all(specs)
            except ServiceFailed as exc:
                if self._stop_requested.is_set() and not self._failed.is_set():
                    code = 0
                else:
                    self.failures.append(str(exc))
                    self.say(f"ERROR: {exc}")
                    code = 1
                return code
            self.ready.set()
            self.say("all services ready; press Ctrl-C to stop")
            code = await self.wait()
            return code
        finally:
            await self.stop_all()
            if handle_signals:
                self.remove_signal_handlers()
            self.say("stopped" + (" (with errors)" if code else ""))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_all()


def _how(code: int, named: bool = False) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}" if named else f"signal {-code}"
    return f"code {code}"


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
