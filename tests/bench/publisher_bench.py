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
- Procore calls per created record (target ≤ 1.05).

    .venv/bin/python -m tests.bench.publisher_bench            # ~2.5 min on 2 cores
    .venv/bin/python -m tests.bench.publisher_bench --windows 1 --time-scale 0.01   # quick look
    .venv/bin/python -m tests.bench.publisher_bench --instances 2   # the companies shared by two instances

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
        return {"date": DAY.isoformat(), "num_workers": 1 + n % 9, "num_hours": "8.00",
                "contact_id": company["vendor"], "notes": f"Crew {n} {marker}"}  # fmt: skip
    if module is Module.TIMECARD:
        return {"date": DAY.isoformat(), "hours": "7.50", "party_id": company["person"],
                "timecard_time_type_id": company["time_type"], "cost_code_id": company["cost_code"],
                "origin_id": uuid.uuid4().int >> 75, "origin_data": marker, "description": marker}  # fmt: skip
    return {"date": DAY.isoformat(), "quantity": 1 + n % 50, "unit": "m3", "cost_code_id": company["cost_code"],
            "description": marker}  # fmt: skip


async def seed(http: httpx.AsyncClient, count: int, time_scale: float) -> list[dict[str, Any]]:
    settings = {"rate_limit_hourly": 600, "rate_limit_spike": 25, "rate_limit_time_scale": time_scale}
    (await http.put("/_sandbox/settings", json=settings)).raise_for_status()
    companies = []
    for i in range(count):
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
        companies.append(
            {
                "id": body["company_id"],
                "project": project["id"],
                "cost_code": project["cost_codes"][0]["id"],
                "vendor": body["vendors"][0],
                "person": body["people"][0],
                "time_type": body["timecard_time_types"][0]["id"],
            }
        )
    return companies


async def queue_backlog(bootstrap: str, topic: str, companies: list[dict[str, Any]], per_company: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        sent = []
        for n in range(per_company):
            for c in companies:
                module = MODULES[n % len(MODULES)]
                entry = uuid.uuid4()
                marker = f"[mc:{entry.hex[:16]}]"
                request = PublishToProcore(
                    account_id=f"bench-{c['id']}", entry_id=entry, entry_version=1, module=module,
                    operation=ProcoreOperation.CREATE, procore_company_id=c["id"], procore_project_id=c["project"],
                    work_date=DAY, payload=payload(module, c, marker, n), marker=marker,
                )  # fmt: skip
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


def measure(log: list[dict[str, Any]], companies: list[dict[str, Any]], hour_s: float) -> dict[str, Any]:
    rest = [e for e in log if e["path"].startswith("/rest/")]
    used = budget = 0.0
    per_company = []
    full_windows = []
    for c in companies:
        calls = sorted((e for e in rest if e["company_id"] == c["id"]), key=lambda e: e["timestamp"])
        accepted = [e for e in calls if e["status"] != 429]
        starts = windows_of(accepted, hour_s)
        if len(starts) < 2:
            continue
        first, last = starts[0], starts[-1]
        n = sum(1 for e in accepted if first <= e["timestamp"] < last)
        allowed = 600 * (last - first) / hour_s
        per_company.append(round(n / allowed, 4))
        full_windows.append(len(starts) - 1)
        used += n
        budget += allowed
    created = sum(1 for e in rest if e["method"] == "POST" and e["status"] == 201)
    return {
        "budget_share": round(used / budget, 4) if budget else None,
        "budget_share_per_company": per_company,
        "full_windows_measured": full_windows,
        "rest_calls": len(rest),
        "status_429": sum(1 for e in rest if e["status"] == 429),
        "records_created": created,
        "calls_per_created_record": round(len(rest) / created, 4) if created else None,
        "token_calls": sum(1 for e in log if e["path"] == "/oauth/token"),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    hour_s = HOUR_S * args.time_scale
    run_s = hour_s * args.windows + args.tail_s
    per_company = int(600 * (args.windows + 1) * 1.1)  # never drained within the run
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    layout = Layout(f"bench_{uuid.uuid4().hex[:6]}_")
    schema = layout.schema("publisher")
    with ExitStack() as stack:
        kafka = stack.enter_context(testinfra.kafka_bootstrap())
        dsn = stack.enter_context(testinfra.postgres_dsn())
        port = free_port()
        sandbox = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything runs concurrently
            [sys.executable, "-m", "sandbox.procore", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        stack.callback(sandbox.terminate)
        wait_for_tcp("127.0.0.1", port, timeout=20)
        url = f"http://127.0.0.1:{port}"
        await provision_layout(dsn, layout)  # the publisher runs as its own role, as deployed
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            companies = await seed(http, args.companies, args.time_scale)
            topics = Topics(prefix)
            await ensure_topics(kafka, topics.all())
            queued = await queue_backlog(kafka, topics.publish_requests, companies, per_company)
            env = {
                **os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "DATABASE_URL": role_dsn(dsn, layout.role("publisher")),
                "TOPIC_PREFIX": prefix, "DB_SCHEMA": schema, "PROCORE_BASE_URL": url,
                "PROCORE_CLIENT_ID": "sandbox-client",
                "PROCORE_CLIENT_SECRET": "sandbox-secret", "LOG_LEVEL": "WARNING", "KAFKA_SESSION_TIMEOUT_MS": "6000",
            }  # fmt: skip
            started = time.monotonic()
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
        await drop_layout(dsn, layout)
    result = measure(log, companies, hour_s)
    result |= {"queued": queued, "time_scale": args.time_scale, "hour_s": hour_s, "run_s": round(run_s)}
    result["instances"] = args.instances
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-scale", type=float, default=0.015, help="scales both windows (0.015: 54 s hours)")
    parser.add_argument("--windows", type=int, default=2, help="full hourly windows to measure")
    parser.add_argument("--companies", type=int, default=5)
    parser.add_argument("--instances", type=int, default=1, help="publisher processes sharing the work (leases)")
    parser.add_argument("--tail-s", type=float, default=15.0, help="run on into the next window by this much")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print()
    print(f"share of the rate budget used : {result['budget_share']:.1%} (target >= 95 %)")
    print(f"  per company                 : {result['budget_share_per_company']}")
    print(f"429 answers                   : {result['status_429']} (target 0)")
    print(f"Procore calls per record      : {result['calls_per_created_record']} (target <= 1.05)")
    print(f"records created / calls       : {result['records_created']} / {result['rest_calls']}")
    print(result)


if __name__ == "__main__":
    main()
