"""Header-driven scheduling for Procore's rate limits, one budget per company.

Procore reports whichever of its two windows (hourly, 10-second spike) is closer to
exhaustion in `X-Rate-Limit-Limit/-Remaining/-Reset`. We never assume a quota: when the
last response said nothing remains, callers for that company wait until the reset time;
a 429/503 blocks the company until `Retry-After` (or the reset) plus jitter. Other
companies are never slowed by one company's limits.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass
class Budget:
    limit: int | None = None
    remaining: int | None = None
    reset_at: float = 0.0
    blocked_until: float = 0.0


def parse_reset(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        reset = float(value)
    except ValueError:
        return None
    # Procore sends Unix seconds; tolerate a relative number of seconds too.
    return reset if reset > 1_000_000_000 else now + reset


def retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    value = headers.get("retry-after")
    if value is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            return None
    reset = parse_reset(headers.get("x-rate-limit-reset"), now)
    return None if reset is None else max(reset - now, 0.0)


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.time, jitter_s: float = 0.25) -> None:
        self._clock = clock
        self._jitter_s = jitter_s
        self._budgets: dict[int, Budget] = {}

    def budget(self, company_id: int) -> Budget:
        return self._budgets.setdefault(company_id, Budget())

    def delay_for(self, company_id: int) -> float:
        """Seconds to wait before the next call for this company (0 when free to go)."""
        b = self.budget(company_id)
        now = self._clock()
        wait = max(b.blocked_until - now, 0.0)
        if b.remaining is not None and b.remaining <= 0 and b.reset_at > now:
            wait = max(wait, b.reset_at - now)
        return wait

    def reserve(self, company_id: int) -> None:
        """Count a call about to be made, so concurrent callers don't overspend the last known budget."""
        b = self.budget(company_id)
        if b.remaining is not None:
            b.remaining -= 1

    async def acquire(self, company_id: int) -> None:
        while (wait := self.delay_for(company_id)) > 0:  # noqa: ASYNC110 - waiting for time itself to pass
            await asyncio.sleep(wait + random.uniform(0, self._jitter_s))
        self.reserve(company_id)

    def observe(self, company_id: int, status: int, headers: Mapping[str, str]) -> None:
        now = self._clock()
        b = self.budget(company_id)
        lowered = {k.lower(): v for k, v in headers.items()}
        if "x-rate-limit-remaining" in lowered:
            try:
                b.remaining = int(float(lowered["x-rate-limit-remaining"]))
                b.limit = int(float(lowered.get("x-rate-limit-limit", b.limit or 0)))
            except ValueError:
                pass
            reset = parse_reset(lowered.get("x-rate-limit-reset"), now)
            if reset is not None:
                b.reset_at = reset
        if status in (429, 503):
            wait = retry_after_seconds(lowered, now)
            b.blocked_until = now + (wait if wait is not None else 1.0)
            if status == 429:
                b.remaining = 0
