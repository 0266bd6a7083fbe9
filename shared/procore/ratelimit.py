"""Header-driven scheduling for Procore's rate limits, one budget per company.

Procore reports whichever of its two windows (hourly, 10-second spike) is closer to
exhaustion in `X-Rate-Limit-Limit/-Remaining/-Reset`. We never assume a quota; from the
last answer we know `remaining` calls may go before `reset`, and we spread them evenly
over that time (pacing) instead of bursting into the limit:

- `remaining > 0`: the next call waits `(reset - now) / (remaining + 1)` after the answer, so the `remaining`
  calls fall evenly *inside* the window (with `/ remaining` the last one would land on the reset itself and each
  window would lose a call: 5 of 6 at a limit of 6 — measured in the publisher benchmark);
- `remaining == 0`: the next call waits until just after `reset`;
- 429/503: nothing for that company until `Retry-After` (or the reset), plus jitter.

Every call of a company holds one of its `max_in_flight` slots (default 1) from `acquire`
until `observe` (or `release`, when no answer came): with one slot, each decision is made
on the freshest headers, and once a 429 arrives no other call of that company is on the
wire or can start before the reset. Companies never wait for each other.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Budget:
    limit: int | None = None
    remaining: int | None = None
    reset_at: float = 0.0
    blocked_until: float = 0.0
    """After a 429/503: no call before this time."""
    next_at: float = 0.0
    """Pacing: the earliest time of the next call."""
    holding: int = 0
    """Slots taken by calls that have not been observed or released yet."""
    observed_at: float = 0.0
    """When the numbers above were last learnt (an answer, or a restored snapshot)."""
    slots: asyncio.Semaphore | None = field(default=None, repr=False)


def budget_key(company_id: int | None) -> int:
    """Which rate budget a call spends when its client names none (`ProcoreClient(budget=…)`): one per company, and
    calls made without a company header under one shared budget. Procore counts per token: the publisher names its
    connection's budget instead (`services.publisher.budgets`)."""
    return company_id or 0


_SAVED = ("limit", "remaining", "reset_at", "blocked_until", "next_at", "observed_at")


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


def pace(now: float, remaining: int, reset_at: float, margin_s: float) -> float:
    """When the next call may go, given `remaining` calls until `reset_at` (pure): the remaining calls evenly spaced
    before the reset, the last one a spacing before it."""
    if reset_at <= now:
        return now  # the window has already reset: its numbers say nothing any more
    if remaining <= 0:
        return reset_at + margin_s
    return now + (reset_at - now) / (remaining + 1)


class RateLimiter:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        jitter_s: float = 0.25,
        max_in_flight: int = 1,
        reset_margin_s: float = 0.05,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._jitter_s = jitter_s
        self._max_in_flight = max_in_flight
        self._margin_s = reset_margin_s
        self._sleep = sleep
        self._budgets: dict[Hashable, Budget] = {}
        self.rate_limited = 0
        """429 answers seen (all companies): a steady state should keep this at 0."""

    def budget(self, company_id: Hashable) -> Budget:
        b = self._budgets.get(company_id)
        if b is None:
            b = self._budgets[company_id] = Budget()
        return b

    def delay_for(self, company_id: Hashable) -> float:
        """Seconds to wait before the next call for this company (0 when free to go)."""
        b = self.budget(company_id)
        now = self._clock()
        wait = max(b.blocked_until - now, b.next_at - now, 0.0)
        if b.remaining is not None and b.remaining <= 0 and b.reset_at > now:
            wait = max(wait, b.reset_at + self._margin_s - now)
        return wait

    async def ready(self, company_id: Hashable) -> None:
        """Wait until the company's budget allows a call (without taking a slot)."""
        while (wait := self.delay_for(company_id)) > 0:
            await self._sleep(wait)

    def snapshot(self, company_id: Hashable) -> dict[str, Any] | None:
        """The last known budget, to hand over to the next instance working this company (None: nothing known)."""
        b = self._budgets.get(company_id)
        if b is None or b.observed_at == 0.0:
            return None
        return {name: getattr(b, name) for name in _SAVED}

    def restore(self, company_id: Hashable, saved: Mapping[str, Any] | None) -> None:
        """Continue from a budget another instance saved, unless what we know ourselves is newer."""
        if not saved:
            return
        b = self.budget(company_id)
        if float(saved.get("observed_at") or 0.0) < b.observed_at:
            return
        b.limit = saved.get("limit")
        b.remaining = saved.get("remaining")
        for name in ("reset_at", "blocked_until", "next_at", "observed_at"):
            setattr(b, name, float(saved.get(name) or 0.0))

    def reserve(self, company_id: Hashable) -> None:
        """Count a call about to be made, so concurrent callers don't overspend the last known budget."""
        b = self.budget(company_id)
        if b.remaining is not None:
            b.remaining -= 1

    async def acquire(self, company_id: Hashable) -> None:
        """Take one of the company's slots and wait until its budget allows the call."""
        b = self.budget(company_id)
        if b.slots is None:
            b.slots = asyncio.Semaphore(self._max_in_flight)
        await b.slots.acquire()
        try:
            await self.ready(company_id)
        except BaseException:
            b.slots.release()
            raise
        b.holding += 1
        self.reserve(company_id)

    def release(self, company_id: Hashable) -> None:
        """Give back a slot after a call that got no answer (connection error, timeout)."""
        b = self.budget(company_id)
        if b.holding > 0 and b.slots is not None:
            b.holding -= 1
            b.slots.release()

    def observe(self, company_id: Hashable, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer's headers and give back its slot."""
        now = self._clock()
        b = self.budget(company_id)
        lowered = {k.lower(): v for k, v in headers.items()}
        b.observed_at = now
        if "x-rate-limit-remaining" in lowered:
            try:
                b.remaining = int(float(lowered["x-rate-limit-remaining"]))
                b.limit = int(float(lowered.get("x-rate-limit-limit", b.limit or 0)))
            except ValueError:
                pass
            reset = parse_reset(lowered.get("x-rate-limit-reset"), now)
            if reset is not None:
                b.reset_at = reset
            if b.remaining is not None:
                b.next_at = pace(now, b.remaining, b.reset_at, self._margin_s)
        if status in (429, 503):
            wait = retry_after_seconds(lowered, now)
            until = now + (wait if wait is not None else 1.0)
            if status == 429:
                self.rate_limited += 1
                b.remaining = 0
                until = max(until, b.reset_at)
            b.blocked_until = until + self._margin_s + random.uniform(0, self._jitter_s)
        self.release(company_id)
