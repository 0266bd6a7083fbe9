"""Publisher benchmark: a backlog across 5 companies under Procore's documented example limits.

The sandbox runs with 600 requests per hour and 25 per 10 s per company (Procore's current
examples), both windows scaled down in time by `--time-scale` (0.015: the hour lasts 54 s,
the spike window 0.15 s). A backlog larger than the run's budget is queued for 5 companies,
the publisher (a separate process, as deployed) works through it, and the sandbox's request
log tells:

- share of the rate budget used: per company, the calls Procore accepted between the first
  call of the first hourly window and the first call of the last window begun, divided by
  what the hourly limit allows in that time (gaps between windows count against us);
- 429 answers (target 0: the headers pace every call);
- Procore calls per created record (target ≤ 1.05), and per created timecard (target ≤ 0.05 when backlogged:
  new timecards go 25 per `bulk_create` call).

    .venv/bin/python -m tests.bench.publisher_bench            # ~2.5 min on 2 cores
    .venv/bin/python -m tests.bench.publisher_bench --windows 1 --time-scale 0.01   # quick look
    .venv/bin/python -m tests.bench.publisher_bench --instances 2   # the companies shared by two instances
    # 1,000 companies backlogged at once; the hourly limit lowered so that their sum (here 1000 x 6 per 180 s,
    # 33 calls/s) is what one machine running the sandbox, the broker, PostgreSQL and the publisher can carry
    python -m tests.bench.publisher_bench --companies 1000 --hourly 6 --time-scale 0.05 --windows 1 --tail-s 60
    # a timecard backlog (bulk_create): 25 times the requests, so that one call's worth stays queued all run
    .venv/bin/python -m tests.bench.publisher_bench --modules timecard --backlog-factor 25 --hourly 30 --spike 5

`--rate-scope token` makes the sandbox count per token (Procore's rule) and the publisher pace per token (its
default); the default here, `company`, keeps the per-company budget share measurable and comparable with earlier
runs.

Also: `companies over their budget` counts companies with a 429 or more accepted calls in one hourly window than
the limit (none may be).

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else local processes (devstack.testinfra).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from devstack import testinfra
from devstack.ports import free_port, wait_for_tcp
from shared.broker import ensure_topics
from shared.events import Module, ProcoreOperation, PublishToProcore
from shared.provision import Layout
from shared.topics import Topics
from tests.support.database import drop_layout, provision_layout, role_dsn

ROOT = Path(__file__).resolve().parents[2]
HOUR_S, SPIKE_S = 3600.0, 10.0
MODULES = [Module.MANPOWER, Module.TIMECARD, Module.PRODUCTION_QUANTITY]
DAY = date(2026, 11, 20)


def payload(module: Module, company: dict[str, Any], marker: str, n: int) -> dict[str, Any]:
    if module is Module.MANPOWER:
        return {
            "date": DAY.isoformat(),
            "num_workers": 1 + n % 9,
            "num_hours": "8.00",
            "contact_id": company["vendor"],
            "notes": f"Crew {n} {marker}",
        }
    if module is Module.TIMECARD:
        return {
            "date": DAY.isoformat(),
            "hours": "7.50",
            "party_id": company["person"],
            "timecard_time_type_id": company["time_type"],
            "cost_code_id": company["cost_code"],
            "origin_id": uuid.uuid4().int >> 75,
            "origin_data": marker,
            "description": marker,
        }
    return {
        "date": DAY.isoformat(),
        "quantity": 1 + n % 50,
        "unit": "m3",
        "cost_code_id": company["cost_code"],
        "description": marker,
    }


async def seed(http: httpx.AsyncClient, args: argparse.Namespace) -> list[dict[str, Any]]:
    (await http.put("/_sandbox/rules", json={"rate_limit_scope": args.rate_scope})).raise_for_status()
    settings = {
        "rate_limit_hourly": args.hourly,
        "rate_limit_spike": args.spike,
        "rate_limit_time_scale": args.time_scale,
    }
    (await http.put("/_sandbox/settings", json=settings)).raise_for_status()
    sem = asyncio.Semaphore(8)
    return list(await asyncio.gather(*(_company(http, i, sem) for i in range(args.companies))))


async def _company(http: httpx.AsyncClient, i: int, sem: asyncio.Semaphore) -> dict[str, Any]:
    async with sem:
        body = (
            await http.post(
                "/_sandbox/companies",
                json={
                    "name": f"Bench Builders {i}",
                    "projects": [{"name": "Tower", "cost_codes": [{"full_code": "03-300", "name": "Concrete"}]}],
                    "vendors": [{"name": "Acme"}],
                    "people": [{"first_name": "Ada", "last_name": "Lovelace"}],
                },
            )
        ).json()
    project = body["projects"][0]
    return {
        "id": body["company_id"],
        "project": project["id"],
        "cost_code": project["cost_codes"][0]["id"],
        "vendor": body["vendors"][0],
        "person": body["people"][0],
        "time_type": body["timecard_time_types"][0]["id"],
    }


async def queue_backlog(
    bootstrap: str, topic: str, companies: list[dict[str, Any]], per_company: int, modules: list[Module]
) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        sent = []
        for n in range(per_company):
            for c in companies:
                module = modules[n % len(modules)]
                entry = uuid.uuid4()
                marker = f"[mc:{entry.hex[:16]}]"
                request = PublishToProcore(
                    account_id=f"bench-{c['id']}",
                    entry_id=entry,
                    entry_version=1,
                    module=module,
                    operation=ProcoreOperation.CREATE,
                    procore_company_id=c["id"],
                    procore_project_id=c["project"],
                    work_date=DAY,
                    payload=payload(module, c, marker, n),
                    marker=marker,
                )
                key = f"{request.account_id}:{c['project']}".encode()
                sent.append(await producer.send(topic, request.model_dump_json().encode(), key=key))
        await asyncio.gather(*sent)
        return len(sent)
    finally:
        await producer.stop()


def windows_of(calls: list[dict[str, Any]], hour_s: float) -> list[float]:
    """Start times of the hourly windows as the sandbox opens them: the first call after the previous expired."""
    starts: list[float] = []
    for call in calls:
        if not starts or call["timestamp"] >= starts[-1] + hour_s:
            starts.append(call["timestamp"])
    return starts


def measure(
    log: list[dict[str, Any]],
    companies: list[dict[str, Any]],
    hour_s: float,
    hourly: int,
    created_by_kind: dict[str, int],
) -> dict[str, Any]:
    """`created_by_kind`: records in the sandbox at the end (a bulk call creates up to 25 with one 201)."""
    rest = [e for e in log if e["path"].startswith("/rest/")]
    created = sum(created_by_kind.values())
    timecards = created_by_kind.get("timecard_entries", 0)
    timecard_calls = [e for e in rest if "timecard_entries" in e["path"]]
    used = budget = 0.0
    per_company = []
    full_windows = []
    over_budget = 0
    most_in_a_window = 0
    for c in companies:
        calls = sorted((e for e in rest if e["company_id"] == c["id"]), key=lambda e: e["timestamp"])
        accepted = [e for e in calls if e["status"] != 429]
        starts = windows_of(accepted, hour_s)
        in_window = [sum(1 for e in accepted if s <= e["timestamp"] < s + hour_s) for s in starts]
        most_in_a_window = max([most_in_a_window, *in_window])
        over_budget += any(n > hourly for n in in_window) or any(e["status"] == 429 for e in calls)
        if len(starts) < 2:
            continue
        first, last = starts[0], starts[-1]
        n = sum(1 for e in accepted if first <= e["timestamp"] < last)
        allowed = hourly * (last - first) / hour_s
        per_company.append(round(n / allowed, 4))
        full_windows.append(len(starts) - 1)
        used += n
        budget += allowed
    # one token (the app's service account) for every company: with --rate-scope token its budget is the hourly limit
    everything = sorted((e for e in rest if e["status"] != 429), key=lambda e: e["timestamp"])
    token_starts = windows_of(everything, hour_s)
    token_windows = [sum(1 for e in everything if s <= e["timestamp"] < s + hour_s) for s in token_starts]
    token_share = None
    if len(token_starts) >= 2:
        first, last = token_starts[0], token_starts[-1]
        n = sum(1 for e in everything if first <= e["timestamp"] < last)
        token_share = round(n / (hourly * (last - first) / hour_s), 4)
    return {
        "token_budget_share": token_share,
        "token_most_calls_in_one_window": max(token_windows, default=0),
        "budget_share": round(used / budget, 4) if budget else None,
        "budget_share_per_company": per_company,
        "full_windows_measured": full_windows,
        "companies_measured": len(per_company),
        "companies_over_budget": over_budget,
        "most_calls_in_one_window": most_in_a_window,
        "rest_calls": len(rest),
        "status_429": sum(1 for e in rest if e["status"] == 429),
        "records_created": created,
        "calls_per_created_record": round(len(rest) / created, 4) if created else None,
        "timecards_created": timecards,
        "timecard_calls": len(timecard_calls),
        "calls_per_created_timecard": round(len(timecard_calls) / timecards, 4) if timecards else None,
        "bulk_calls": sum(1 for e in timecard_calls if e["path"].endswith("/bulk_create")),
        "token_calls": sum(1 for e in log if e["path"] == "/oauth/token"),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    hour_s = HOUR_S * args.time_scale
    run_s = hour_s * args.windows + args.tail_s
    per_company = int(args.hourly * (args.windows + 1) * 1.1 * args.backlog_factor)  # never drained within the run
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    layout = Layout(f"bench_{uuid.uuid4().hex[:6]}_")
    schema = layout.schema("publisher")
    with ExitStack() as stack:
        kafka = stack.enter_context(testinfra.kafka_bootstrap())
        dsn = stack.enter_context(testinfra.postgres_dsn())
        port = free_port()
        sandbox = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything runs concurrently
            [sys.executable, "-m", "sandbox.procore", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        stack.callback(sandbox.terminate)
        wait_for_tcp("127.0.0.1", port, timeout=20)
        url = f"http://127.0.0.1:{port}"
        await provision_layout(dsn, layout)  # the publisher runs as its own role, as deployed
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            companies = await seed(http, args)
            topics = Topics(prefix)
            await ensure_topics(kafka, topics.all())
            modules = [Module(m) for m in args.modules.split(",")]
            queued = await queue_backlog(kafka, topics.publish_requests, companies, per_company, modules)
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": kafka,
                "DATABASE_URL": role_dsn(dsn, layout.role("publisher")),
                "TOPIC_PREFIX": prefix,
                "DB_SCHEMA": schema,
                "PROCORE_BASE_URL": url,
                "PROCORE_LOGIN_URL": url,
                "PROCORE_CLIENT_ID": "sandbox-client",
                "PROCORE_CLIENT_SECRET": "sandbox-secret",
                "LOG_LEVEL": "WARNING",
                "KAFKA_SESSION_TIMEOUT_MS": "6000",
                "PROCORE_RATE_LIMIT_SCOPE": args.rate_scope,
            }
            started = time.monotonic()
            load_at_start = round(os.getloadavg()[0], 1)
            publishers = [
                subprocess.Popen(  # noqa: ASYNC220 - started once, before anything runs concurrently
                    [sys.executable, "-m", "services.publisher"],
                    cwd=ROOT,
                    env=env | {"HTTP_PORT": str(free_port()), "PUBLISHER_INSTANCE_ID": f"bench-{n}"},
                )
                for n in range(args.instances)
            ]
            try:
                print(
                    f"queued {queued} creates for {len(companies)} companies; {args.instances} publisher"
                    f" instance(s); running {run_s:.0f} s",
                    flush=True,
                )
                log: list[dict[str, Any]] = []
                while time.monotonic() - started < run_s:
                    await asyncio.sleep(10)
                    since = log[-1]["seq"] if log else 0
                    log += (await http.get("/_sandbox/requests", params={"since": since})).json()
                    print(f"  {time.monotonic() - started:5.0f} s: {len(log)} calls", flush=True)
            finally:
                for publisher in publishers:
                    publisher.terminate()
                for publisher in publishers:
                    publisher.wait(timeout=30)
            log += (await http.get("/_sandbox/requests", params={"since": log[-1]["seq"] if log else 0})).json()
            created_by_kind = {}
            for kind in ("manpower_logs", "timecard_entries", "quantity_logs"):
                stored = (await http.get(f"/_sandbox/records/{kind}")).json()
                created_by_kind[kind] = sum(1 for r in stored if not r.get("deleted"))
        await drop_layout(dsn, layout)
    result = measure(log, companies, hour_s, args.hourly, created_by_kind)
    result |= {"queued": queued, "time_scale": args.time_scale, "hour_s": hour_s, "run_s": round(run_s)}
    result["instances"] = args.instances
    result["load_at_start"] = load_at_start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-scale", type=float, default=0.015, help="scales both windows (0.015: 54 s hours)")
    parser.add_argument("--windows", type=int, default=2, help="full hourly windows to measure")
    parser.add_argument("--companies", type=int, default=5)
    parser.add_argument("--hourly", type=int, default=600, help="the sandbox's hourly limit per company")
    parser.add_argument("--spike", type=int, default=25, help="the sandbox's 10-second spike limit per company")
    parser.add_argument("--instances", type=int, default=1, help="publisher processes sharing the work (leases)")
    parser.add_argument("--tail-s", type=float, default=15.0, help="run on into the next window by this much")
    parser.add_argument("--modules", default="manpower,timecard,production_quantity", help="modules in the backlog")
    parser.add_argument("--backlog-factor", type=float, default=1.0, help="requests per call the budget allows")
    parser.add_argument("--rate-scope", choices=["company", "token"], default="company", help="how limits count")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print()
    share = result["budget_share"]
    print(
        f"share of the rate budget used : {'n/a' if share is None else f'{share:.1%}'} (target >= 95 %;"
        f" {result['companies_measured']} of {args.companies} companies had a full window to measure)"
    )
    shares = sorted(result["budget_share_per_company"])
    if len(shares) <= 10:
        print(f"  per company                 : {shares}")
    elif shares:
        low = shares[: max(1, len(shares) // 100)]
        print(
            f"  per company                 : min {shares[0]:.1%}, 1st percentile {low[-1]:.1%},"
            f" median {shares[len(shares) // 2]:.1%}, max {shares[-1]:.1%};"
            f" {sum(1 for x in shares if x < 0.95)} of {len(shares)} under 95 %"
        )
    print(
        f"companies over their budget   : {result['companies_over_budget']}"
        f" (most calls in one window: {result['most_calls_in_one_window']} of {args.hourly})"
    )
    if args.rate_scope == "token":
        print(
            f"the token's budget used      : {result['token_budget_share']}, most calls in one hourly window"
            f" {result['token_most_calls_in_one_window']} (limit {args.hourly})"
        )
    print(f"429 answers                   : {result['status_429']} (target 0)")
    print(f"Procore calls per record      : {result['calls_per_created_record']} (target <= 1.05)")
    print(
        f"calls per created timecard    : {result['calls_per_created_timecard']} (target <= 0.05 when backlogged;"
        f" {result['bulk_calls']} bulk_create calls, {result['timecards_created']} timecards)"
    )
    print(f"load average (1 min) at start / end: {result['load_at_start']} / {os.getloadavg()[0]:.1f}")
    print(f"records created / calls       : {result['records_created']} / {result['rest_calls']}")
    print({k: v for k, v in result.items() if k != "budget_share_per_company" or len(v) <= 10})


if __name__ == "__main__":
    main()
