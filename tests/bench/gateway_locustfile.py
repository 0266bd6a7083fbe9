"""Locust users reading the gateway's dashboard API: week views of the 3 modules, cell details, one entry.

Started by `python -m tests.bench.gateway_bench` (which writes the targets file and starts the gateway); by hand:

    GWBENCH_TARGETS=targets.json locust -f tests/bench/gateway_locustfile.py --headless -u 40 -r 40 -t 30s \\
        --host http://127.0.0.1:8000

Targets (JSON): `tokens` (bearer tokens, one per account), `weeks` (Mondays), `sites` (job site ids), `cells`
([job_site_id, day] with entries, for details), `entries` (entry ids), `mix` (task weights), `page_size`
(job sites per week page, 0 = all), `rate` (requests per second per user: open-ish load at a fixed offered rate;
0 = as fast as possible). Every request's latency after the warm-up is appended to `GWBENCH_SAMPLES`
(`name<TAB>ms<TAB>ok`), so the wrapper computes exact percentiles of groups (all week views together).
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task
from locust.env import Environment

with open(os.environ["GWBENCH_TARGETS"]) as targets_file:
    TARGETS: dict[str, Any] = json.load(targets_file)
WARMUP_S = float(TARGETS.get("warmup_s", 0))
MODULES = ("manpower", "timecard", "production_quantity")
_samples: list[str] = []
_started = time.monotonic()


@events.request.add_listener
def _record(name: str, response_time: float, exception: BaseException | None, **_: Any) -> None:
    if time.monotonic() - _started >= WARMUP_S:
        _samples.append(f"{name}\t{response_time:.3f}\t{0 if exception else 1}")


@events.quitting.add_listener
def _dump(environment: Environment, **_: Any) -> None:
    with open(os.environ["GWBENCH_SAMPLES"], "w") as out:
        out.write("\n".join(_samples))


class DashboardReader(FastHttpUser):
    """A dashboard user: mostly reads a week, opens cells, now and then an entry's history."""

    wait_time = constant_throughput(TARGETS["rate"]) if TARGETS.get("rate") else (lambda self: 0)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {TARGETS['token']}"}

    def _week(self, module: str) -> None:
        params = f"week_start={random.choice(TARGETS['weeks'])}"
        if TARGETS.get("page_size"):
            pages = max(1, -(-len(TARGETS["sites"]) // TARGETS["page_size"]))
            params += f"&limit={TARGETS['page_size']}&offset={random.randrange(pages) * TARGETS['page_size']}"
        self.client.get(f"/api/modules/{module}/dashboard?{params}", headers=self.headers, name=f"week {module}")

    @task(TARGETS["mix"].get("week_manpower", 0))
    def week_manpower(self) -> None:
        self._week("manpower")

    @task(TARGETS["mix"].get("week_timecard", 0))
    def week_timecard(self) -> None:
        self._week("timecard")

    @task(TARGETS["mix"].get("week_production_quantity", 0))
    def week_production_quantity(self) -> None:
        self._week("production_quantity")

    @task(TARGETS["mix"].get("details", 0))
    def details(self) -> None:
        site, day = random.choice(TARGETS["cells"])
        module = random.choice(MODULES)
        with self.client.get(
            f"/api/modules/{module}/cells/{site}/{day}", headers=self.headers, name="details", catch_response=True
        ) as response:
            if response.status_code == 404:  # a cell without entries of that module: an answer all the same
                response.success()

    @task(TARGETS["mix"].get("entry", 0))
    def entry(self) -> None:
        self.client.get(f"/api/entries/{random.choice(TARGETS['entries'])}", headers=self.headers, name="entry")
