"""Entries by module and status, and the oldest Publishing one: gauges refreshed when Prometheus scrapes.

One grouped query over `entries`, run at most every `min_interval_s` however often /metrics is read
(a scrape in between shows the previous counts). Every (module, status) pair is set, so a status that
empties shows 0 instead of its last count.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from services.aggregator.domain import Status
from shared import metrics
from shared.events import Module

COUNT_BY_STATUS = """
SELECT module, status, count(*) AS n,
       COALESCE(EXTRACT(EPOCH FROM now() - min(updated_at) FILTER (WHERE status = 'publishing')), 0)::float8 AS age
  FROM entries
 GROUP BY module, status
"""


class EntryStatusGauges:
    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool | None],
        min_interval_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last: float | None = None

    async def refresh(self) -> None:
        now = self._clock()
        pool = self._pool()
        if pool is None or (self._last is not None and now - self._last < self._min_interval_s):
            return
        async with pool.acquire() as conn:
            rows = await conn.fetch(COUNT_BY_STATUS)
        self._last = now
        counts = {(module.value, status.value): 0 for module in Module for status in Status}
        oldest = {module.value: 0.0 for module in Module}
        for row in rows:
            counts[(row["module"], row["status"])] = int(row["n"])
            if row["status"] == Status.PUBLISHING:
                oldest[row["module"]] = float(row["age"])
        for (module, status), count in counts.items():
            metrics.ENTRIES.labels(module, status).set(count)
        for module, age in oldest.items():
            metrics.OLDEST_PUBLISHING.labels(module).set(age)
