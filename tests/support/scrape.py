"""Reading a running service's /metrics: find its HTTP port from its pid (Linux /proc), parse the text."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
"""(sample name, its labels) → value."""


def listening_ports(pid: int) -> list[int]:
    """TCP ports `pid` listens on: its socket inodes (/proc/<pid>/fd) matched with the LISTEN rows of /proc/net/tcp*."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match.group(1))
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def parse(text: str) -> Series:
    found: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


async def metrics_url(pid: int) -> str:
    """The /metrics URL of the process (the port that answers it: a service may listen on several)."""
    async with httpx.AsyncClient(timeout=5) as http:
        for port in listening_ports(pid):
            url = f"http://127.0.0.1:{port}/metrics"
            try:
                response = await http.get(url)
            except httpx.HTTPError:
                continue
            if response.status_code == 200 and response.headers["content-type"].startswith("text/plain"):
                return url
    raise AssertionError(f"process {pid} serves no /metrics on {listening_ports(pid)}")


async def scrape(url: str) -> Series:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    return parse(response.text)


def total(series: Series, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (a value ending in `*`: a prefix,
    starting with `*`: a suffix)."""

    def fits(have: Mapping[str, str]) -> bool:
        for key, want in labels.items():
            value = have.get(key)
            if value is None:
                return False
            if want.endswith("*") and value.startswith(want[:-1]):
                continue
            if want.startswith("*") and value.endswith(want[1:]):
                continue
            if value != want:
                return False
        return True

    return sum(v for (n, ls), v in series.items() if n == name and fits(dict(ls)))


def service_pids(root: int, names: tuple[str, ...]) -> dict[str, int]:
    """The pids of `python -m services.<name>` among the descendants of `root` (from /proc, whatever is printed)."""
    found: dict[str, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            todo.extend(int(child) for child in task.read_text().split())
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for name in names:
            if f"services.{name}".encode() in argv:
                found[name] = pid
    return found
