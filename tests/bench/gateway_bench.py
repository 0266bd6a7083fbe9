"""The gateway under load on the big data set (`python -m tests.bench.gateway_data` first; Locust and py-spy come
with the development lock, `make venv`).

    python -m tests.bench.gateway_bench                                  # every load scenario, 3 runs each
    python -m tests.bench.gateway_bench --scenario mixed --rps 500 --runs 3 --duration 30
    python -m tests.bench.gateway_bench --mode single --samples 300      # latency without concurrency

It starts a Kafka-protocol broker (devstack.testinfra: Tansu unless KAFKA_BOOTSTRAP_SERVERS is set) and the gateway
as a real process (`python -m services.gateway` with HTTP_WORKERS=`--workers`, as the gateway's own role on the
`gwbench_` layout; `--launcher uvicorn`: `uvicorn --workers`, one socket shared by the workers), then runs Locust
headless (tests/bench/gateway_locustfile.py) once per scenario and run, and prints one line per run:

    scenario=mixed run=1 users=… offered_rps=… rps=… week_p50_ms=… week_p95_ms=… details_p95_ms=… entry_p95_ms=…
    errors=…

and per scenario the spread (min-max over the runs) of each figure. Reads are of the big account (`gw-big`, 500
job sites): week views of the 4 latest weeks (all three modules), details of cells of those weeks, entries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from math import nan
from pathlib import Path

import asyncpg
import httpx

from devstack import testinfra
from services.gateway.tokens import Principal, issue_dev_token
from tests.bench.cpu import cpu_seconds, machine_busy_seconds
from tests.bench.gateway_data import BIG_ACCOUNT, LAYOUT
from tests.support.database import role_dsn

JWT_SECRET = "gateway-bench-secret-0123456789abcdef0123456789"
HERE = Path(__file__).parent
ALL = ["procore.mapping", "procore.publish", "procore.setup"]

SCENARIOS: dict[str, dict[str, int]] = {
    # What a busy account's dashboards do: a week, then cells of it, now and then an entry's history.
    "mixed": {"week_manpower": 10, "week_timecard": 10, "week_production_quantity": 10, "details": 50, "entry": 20},
    "week": {"week_manpower": 1, "week_timecard": 1, "week_production_quantity": 1},
    "details": {"details": 1},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def targets(admin_dsn: str, weeks: int) -> dict[str, object]:
    schema = LAYOUT.schema("aggregator")
    conn = await asyncpg.connect(admin_dsn)
    try:
        last = await conn.fetchval(f'SELECT max(work_date) FROM "{schema}".entries WHERE account_id = $1', BIG_ACCOUNT)
        if last is None:
            raise SystemExit("no bench data: run python -m tests.bench.gateway_data first")
        mondays = [last - timedelta(days=last.weekday()) - timedelta(weeks=i) for i in range(weeks)]
        first = min(mondays)
        cells = await conn.fetch(
            f"""SELECT job_site_id, work_date FROM (SELECT DISTINCT job_site_id, work_date FROM "{schema}".entries
                 WHERE account_id = $1 AND work_date >= $2 AND module = 'timecard') c ORDER BY random() LIMIT 3000""",
            BIG_ACCOUNT,
            first,
        )
        entries = await conn.fetch(
            f"""SELECT entry_id FROM "{schema}".entries TABLESAMPLE SYSTEM (1)
                 WHERE account_id = $1 AND work_date >= $2 LIMIT 3000""",
            BIG_ACCOUNT,
            first,
        )
        sites = await conn.fetch(
            f'SELECT DISTINCT job_site_id FROM "{schema}".entries WHERE account_id = $1 AND work_date >= $2',
            BIG_ACCOUNT,
            first,
        )
    finally:
        await conn.close()
    token = issue_dev_token(Principal("bench-user", BIG_ACCOUNT, frozenset(ALL)), JWT_SECRET, 24 * 3600)
    return {
        "token": token,
        "weeks": [m.isoformat() for m in mondays],
        "cells": [[r["job_site_id"], r["work_date"].isoformat()] for r in cells],
        "entries": [str(r["entry_id"]) for r in entries],
        "sites": [r["job_site_id"] for r in sites],
    }


@contextmanager
def gateway(
    admin_dsn: str, kafka: str, workers: int, log: Path, source: str = "", cache: bool = True, launcher: str = "service"
) -> Iterator[tuple[str, int]]:
    """The gateway as a process with `workers` worker processes: `python -m services.gateway` (HTTP_WORKERS, a
    socket per worker), or with launcher "uvicorn" `uvicorn --workers` (one socket shared by the workers). `source`:
    another checkout's code, first on the path, e.g. the code before a change (with "uvicorn" it needs
    `entrypoint.create_app`)."""
    port = free_port()
    env = {
        **os.environ,
        **({"PYTHONPATH": source} if source else {}),
        **({} if cache else {"WEEK_CACHE_ENTRIES": "0"}),
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "DATABASE_URL": role_dsn(admin_dsn, LAYOUT.role("gateway")),
        "ENVIRONMENT": "development",
        "JWT_SECRET": JWT_SECRET,
        "AGGREGATOR_SCHEMA": LAYOUT.schema("aggregator"),
        "MAPPING_SCHEMA": LAYOUT.schema("mapping"),
        "TOPIC_PREFIX": "gwbench.",
        "HTTP_PORT": str(port),
        "HTTP_WORKERS": str(workers),
        "LOG_LEVEL": "WARNING",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "",
        "RATE_LIMIT_STORAGE": "memory://",  # reads only: command limits are not exercised
    }
    service = [sys.executable, "-m", "services.gateway"]
    shared_socket = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "services.gateway.entrypoint:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--app-dir",
        source or str(HERE.parent.parent),
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(
            service if launcher == "service" else shared_socket,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=source or str(HERE.parent.parent),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the gateway did not start: see {log}\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
        time.sleep(1.0)  # the other workers
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(samples: list[tuple[str, float, bool]], seconds: float) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    errors = 0
    for name, ms, ok in samples:
        errors += not ok
        groups["week" if name.startswith("week") else name].append(ms)
    out: dict[str, float] = {"rps": len(samples) / seconds, "errors": errors}
    for group, values in sorted(groups.items()):
        out[f"{group}_p50_ms"] = percentile(values, 50)
        out[f"{group}_p95_ms"] = percentile(values, 95)
        out[f"{group}_p99_ms"] = percentile(values, 99)
    return out


def children(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [c for child in (task / "children").read_text().split() for c in children(int(child))]
    return found


def backends(admin_dsn: str) -> list[int]:
    async def fetch() -> list[int]:
        conn = await asyncpg.connect(admin_dsn)
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE usename = $1", LAYOUT.role("gateway"))
            return [r["pid"] for r in rows]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def run_locust(
    url: str, data: dict[str, object], users: int, duration: int, warmup: int, work: Path, gateway_pid: int, dsn: str
) -> dict:
    targets_file, samples_file = work / "targets.json", work / "samples.tsv"
    targets_file.write_text(json.dumps({**data, "warmup_s": warmup}))
    samples_file.unlink(missing_ok=True)
    env = {**os.environ, "GWBENCH_TARGETS": str(targets_file), "GWBENCH_SAMPLES": str(samples_file)}
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(HERE / "gateway_locustfile.py"),
        "--headless",
        "--only-summary",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{duration + warmup}s",
        "--host",
        url,
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
    ]
    gateway_pids, pg_pids = children(gateway_pid), backends(dsn)
    locust = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(warmup)  # CPU is counted over the measured part only
    before = (cpu_seconds(gateway_pids), cpu_seconds(backends(dsn)), cpu_seconds([locust.pid]), machine_busy_seconds())
    each_before = [cpu_seconds([pid]) for pid in gateway_pids]
    started = time.monotonic()
    time.sleep(duration)
    pg_pids = backends(dsn)
    after = (cpu_seconds(gateway_pids), cpu_seconds(pg_pids), cpu_seconds([locust.pid]), machine_busy_seconds())
    wall = time.monotonic() - started
    each = [cpu_seconds([pid]) - b for pid, b in zip(gateway_pids, each_before, strict=True)]
    _, stderr = locust.communicate()
    if not samples_file.exists():
        raise SystemExit(f"locust failed ({locust.returncode}):\n{stderr[-3000:]}")
    rows = [line.split("\t") for line in samples_file.read_text().splitlines() if line]
    figures: dict[str, float | str] = {**summarize([(n, float(ms), ok == "1") for n, ms, ok in rows], duration)}
    # Cores busy (1.0 = one core all the time) over the measured seconds: what bounds throughput on 2 cores.
    for name, b, a in zip(("cpu_gateway", "cpu_postgres", "cpu_locust", "cpu_machine"), before, after, strict=True):
        figures[name] = round((a - b) / wall, 2)
    # How evenly the workers share the load (cores busy per worker process, busiest first; the supervisor and
    # multiprocessing's resource tracker use next to nothing and are left out).
    figures["cpu_workers"] = "/".join(f"{c / wall:.2f}" for c in sorted(each, reverse=True) if c / wall >= 0.02)
    return figures


def fmt(figures: dict[str, float | str]) -> str:
    return " ".join(
        f"{k}={v}" if isinstance(v, str) else f"{k}={v:.2f}" if k.startswith("cpu_") else f"{k}={v:.1f}"
        for k, v in figures.items()
    )


def single(url: str, data: dict, samples: int, page_size: int) -> None:
    """One request at a time: week views (each module, random week) and details (random cell and module)."""
    headers = {"Authorization": f"Bearer {data['token']}"}
    # A new connection per request: httpx's kept-alive connections add a steady ~40 ms to small answers here (a
    # delayed ACK; curl on a kept-alive connection does not see it), which would hide what the gateway takes.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, headers=headers, timeout=30, limits=limits) as client:
        for kind in ("manpower", "timecard", "production_quantity", "details", "entry"):
            times: list[float] = []
            size, smallest = 0, 1 << 30
            for _ in range(samples):
                if kind == "details":
                    site, day = random.choice(data["cells"])
                    module = random.choice(["manpower", "timecard", "production_quantity"])
                    path = f"/api/modules/{module}/cells/{site}/{day}"
                elif kind == "entry":
                    path = f"/api/entries/{random.choice(data['entries'])}"
                else:
                    path = f"/api/modules/{kind}/dashboard?week_start={random.choice(data['weeks'])}"
                    if page_size:
                        path += f"&limit={page_size}"
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                if response.status_code not in (200, 404):
                    raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
                size = max(size, len(response.content))
                smallest = min(smallest, len(response.content))
            label = kind if kind in ("details", "entry") else f"week_{kind}"
            print(
                f"single {label}: p50_ms={percentile(times, 50):.1f} p95_ms={percentile(times, 95):.1f}"
                f" max_ms={max(times):.1f} n={samples} body_bytes={smallest}..{size}",
                flush=True,
            )


def browser(url: str, data: dict, runs: int) -> None:
    """Time to grid in a real Chromium (Playwright driving /usr/bin/chromium): the dashboard opened on a week of
    the big account until its grid shows the first page of job sites (50), then Next week, Previous week and Next
    job sites (each a fetch and a render). CSP is bypassed only so Playwright can evaluate its probes."""
    from playwright.sync_api import sync_playwright

    week = data["weeks"][1]
    expected = min(50, len(data["sites"]))
    changed = (
        "() => { const g = document.querySelector('table.grid');"
        " return g && g !== window.__grid && g.querySelectorAll('tbody tr').length > 0; }"
    )
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        for module in ("manpower", "timecard", "production_quantity"):
            loads: list[float] = []
            switches: dict[str, list[float]] = defaultdict(list)
            rows = cells = 0
            for _ in range(runs):
                context = chromium.new_context(viewport={"width": 1600, "height": 1000}, bypass_csp=True)
                page = context.new_page()
                page.add_init_script(f"localStorage.setItem('gateway.token', {json.dumps(data['token'])})")
                page.goto(f"{url}/#{module}?week={week}")
                page.wait_for_function(
                    f"() => document.querySelectorAll('table.grid tbody tr').length >= {expected}", timeout=60000
                )
                loads.append(page.evaluate("() => performance.now()"))
                rows = page.evaluate("() => document.querySelectorAll('table.grid tbody tr').length")
                cells = page.evaluate("() => document.querySelectorAll('table.grid td.cell.has').length")
                for name, selector in (
                    ("next_week", "#next-week"),
                    ("prev_week", "#prev-week"),
                    ("next_sites", ".site-pager:not([hidden]) button:last-of-type"),
                ):
                    if not page.evaluate("(s) => !!document.querySelector(s)", selector):
                        continue  # no pager (the code before pages, or one page of job sites)
                    started = page.evaluate(
                        "(s) => { const t = performance.now(); window.__grid = document.querySelector('table.grid');"
                        " document.querySelector(s).click(); return t; }",
                        selector,
                    )
                    page.wait_for_function(changed, timeout=60000)
                    done = page.evaluate("() => performance.now()")
                    switches[name].append(done - started)
                    fetched = page.evaluate(
                        "() => performance.getEntriesByType('resource').filter((e) => e.name.includes('/dashboard?'))"
                        ".map((e) => e.responseEnd).pop()"
                    )
                    switches[f"{name}_render"].append(done - fetched)
                context.close()
            moves = " ".join(
                f"{name}_ms p50={statistics.median(v):.0f} max={max(v):.0f}" for name, v in switches.items()
            )
            print(
                f"browser {module}: rows={rows} cells={cells} time_to_grid_ms p50={statistics.median(loads):.0f}"
                f" min={min(loads):.0f} max={max(loads):.0f} {moves} (n={runs})",
                flush=True,
            )
        chromium.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["load", "single", "browser"], default="load")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rps", type=float, default=0, help="offered load (requests/s over all users); 0 = closed")
    parser.add_argument("--duration", type=int, default=30, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="the gateway's worker processes")
    parser.add_argument(
        "--launcher",
        choices=["service", "uvicorn"],
        default="service",
        help="service: python -m services.gateway, a socket per worker; uvicorn: uvicorn --workers, one shared socket",
    )
    parser.add_argument("--weeks", type=int, default=4, help="the latest weeks read")
    parser.add_argument("--page-size", type=int, default=0, help="job sites per week request (0: the whole week)")
    parser.add_argument("--no-cache", action="store_true", help="WEEK_CACHE_ENTRIES=0: every week view computed")
    parser.add_argument("--source", default="", help="run the gateway from this checkout (before/after numbers)")
    parser.add_argument("--samples", type=int, default=200, help="single mode: requests per kind")
    parser.add_argument("--dsn", default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()

    data = asyncio.run(targets(args.dsn, args.weeks))
    data["page_size"] = args.page_size
    sites: list[str] = data["sites"]  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="gwbench-") as tmp:
        work = Path(tmp)
        with (
            testinfra.kafka_bootstrap(log_dir=work) as kafka,
            gateway(
                args.dsn, kafka, args.workers, work / "gw.log", args.source, not args.no_cache, args.launcher
            ) as served,
        ):
            url, gateway_pid = served
            print(
                f"gateway {url} workers={args.workers} launcher={args.launcher}"
                f" source={args.source or 'this checkout'}; {len(sites)} job sites"
            )
            if args.mode == "single":
                single(url, data, args.samples, args.page_size)
                return
            if args.mode == "browser":
                browser(url, data, args.runs)
                return
            scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
            for scenario in scenarios:
                runs = []
                for run in range(1, args.runs + 1):
                    rate = args.rps / args.users if args.rps else 0
                    figures = run_locust(
                        url,
                        {**data, "mix": SCENARIOS[scenario], "rate": rate},
                        args.users,
                        args.duration,
                        args.warmup,
                        work,
                        gateway_pid,
                        args.dsn,
                    )
                    runs.append(figures)
                    offered = f"{args.rps:.0f}" if args.rps else "closed"
                    print(
                        f"scenario={scenario} run={run} users={args.users} offered_rps={offered} {fmt(figures)}",
                        flush=True,
                    )
                keys = sorted({k for r in runs for k, v in r.items() if not isinstance(v, str)})
                spread = " ".join(
                    f"{k}={min(r.get(k, nan) for r in runs):.1f}..{max(r.get(k, nan) for r in runs):.1f}" for k in keys
                )
                median = " ".join(f"{k}={statistics.median(r.get(k, 0) for r in runs):.1f}" for k in keys)
                print(f"scenario={scenario} median {median}\nscenario={scenario} spread {spread}", flush=True)


if __name__ == "__main__":
    main()
