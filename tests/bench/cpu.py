"""CPU accounting for the benchmarks (Linux `/proc`; processes that are gone count 0)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds these processes have used so far."""
    total = 0
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / CLOCK_TICKS


def ended_children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the children `pid` has waited for (cutime + cstime): for PostgreSQL's postmaster, what every
    backend that has ended used."""
    fields = _stat(pid)
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS if fields is not None else 0.0


def parent_of(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields is not None else 0


def machine_busy_seconds() -> float:
    """CPU seconds every process of the machine used (all cores; /proc/stat, idle and iowait excluded)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS
