"""Child-process plumbing shared by the broker, PostgreSQL and the supervisor.

Every child gets its own session (so a Ctrl-C in the terminal reaches only the parent, which
then stops the children in order) and, on Linux, ``PR_SET_PDEATHSIG=SIGKILL`` so that the
child is killed by the kernel if the parent dies without cleaning up (even by SIGKILL).

Caveat of PDEATHSIG: it fires when the *thread* that spawned the child exits. Spawn children
from a long-lived thread (the main thread or the event-loop thread), never from a short-lived
worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "child_preexec",
    "kill_process_tree",
    "pid_alive",
    "tail",
]

_PR_SET_PDEATHSIG = 1


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def child_preexec(
    *,
    uid: int | None = None,
    gid: int | None = None,
    death_signal: int = signal.SIGKILL,
) -> Callable[[], None]:
    """Build a ``preexec_fn``: optionally drop to ``uid``/``gid``, then arm PDEATHSIG.

    The credential change happens *before* ``prctl`` because the kernel clears the
    parent-death signal whenever the effective uid/gid changes.
    """
    parent_pid = os.getpid()

    def _preexec() -> None:
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0)
            # The parent may already have died between fork() and prctl().
            if os.getppid() != parent_pid:
                os._exit(1)

    return _preexec


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _signal_group_or_pid(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (our children get their own session), else ``pid``."""
    try:
        os.killpg(pid, sig)
        return
    except (ProcessLookupError, PermissionError):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _sweep_group(pid: int) -> None:
    """SIGKILL whatever is left in the process group led by ``pid`` (grandchildren)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def kill_process_tree(
    proc: subprocess.Popen[bytes],
    *,
    first_signal: int = signal.SIGTERM,
    timeout: float = 10.0,
    first_to_group: bool = True,
) -> int | None:
    """Send ``first_signal``, wait up to ``timeout`` s, then SIGKILL the process group.

    ``first_to_group=False`` sends the first signal to the leader only (PostgreSQL's postmaster
    must be the one to receive the shutdown request). Returns the exit code.
    """
    if proc.poll() is not None:
        return proc.returncode
    if first_to_group:
        _signal_group_or_pid(proc.pid, first_signal)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, first_signal)
    try:
        code: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group_or_pid(proc.pid, signal.SIGKILL)
        try:
            code = proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            code = proc.poll()
    _sweep_group(proc.pid)
    return code


def tail(path: Path, lines: int = 30) -> str:
    """Last ``lines`` lines of a log file (empty string if missing)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
