"""Header-driven pacing per company (shared.procore.ratelimit), on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from shared.procore.ratelimit import RateLimiter, pace


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": str(reset),
    }


def test_pace_spreads_the_remaining_calls_until_the_reset() -> None:
    assert pace(100.0, 24, 110.0, 0.05) == pytest.approx(100.0 + 10 / 25)
    assert pace(100.0, 0, 110.0, 0.05) == pytest.approx(110.05)
    assert pace(100.0, 0, 99.0, 0.05) == 100.0  # that window is over


def test_paced_calls_use_the_whole_window_and_never_more() -> None:
    """A window of 6 calls in 180 s, the first at 0: the five left go at 30, 60, …, 150 — all six inside the
    window — and the seventh waits for the reset."""
    now, reset, remaining, calls = 0.0, 180.0, 5, [0.0]
    while remaining > 0:
        now = pace(now, remaining, reset, 0.05)
        calls.append(now)
        remaining -= 1
    assert calls == pytest.approx([0, 30, 60, 90, 120, 150])
    assert all(t < reset for t in calls)
    assert pace(now, 0, reset, 0.05) == pytest.approx(180.05)


def test_observed_headers_pace_the_next_call() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock, jitter_s=0)
    limiter.observe(1, 200, headers(25, 20, clock.now + 10))
    assert limiter.delay_for(1) == pytest.approx(10 / 21)
    limiter.observe(1, 200, headers(25, 0, clock.now + 4))
    assert limiter.delay_for(1) == pytest.approx(4.05)
    assert limiter.delay_for(2) == 0  # another company is not slowed


def test_429_blocks_the_company_until_retry_after_and_reset() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock, jitter_s=0)
    limiter.observe(1, 429, {"Retry-After": "3", **headers(25, 0, clock.now + 5)})
    assert limiter.delay_for(1) == pytest.approx(5.05)
    limiter.observe(2, 429, {"Retry-After": "2"})
    assert limiter.delay_for(2) == pytest.approx(2.05)
    assert limiter.rate_limited == 2
    assert limiter.delay_for(3) == 0


async def test_one_call_per_company_at_a_time_and_slots_come_back() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock, jitter_s=0, sleep=clock.sleep)
    await limiter.acquire(1)
    second = asyncio.create_task(limiter.acquire(1))
    other = asyncio.create_task(limiter.acquire(2))
    await asyncio.sleep(0)
    assert other.done()
    assert not second.done()
    limiter.release(1)  # the first call got no answer
    await asyncio.wait_for(second, 1)
    limiter.observe(1, 200, headers(10, 9, clock.now + 10))
    await asyncio.wait_for(limiter.acquire(1), 1)
    assert clock.now == pytest.approx(1_800_000_000.0 + 10 / 9)  # paced, not burst


async def test_a_backlog_uses_the_whole_window_and_never_more() -> None:
    """Simulate a Procore window of 25 calls per 10 s: paced calls fit exactly, none is refused."""
    clock = Clock()
    limiter = RateLimiter(clock=clock, jitter_s=0, sleep=clock.sleep)
    start = clock.now
    window_start, used, refused, sent = start, 0, 0, 0
    while clock.now < start + 60:
        await limiter.acquire(1)
        if clock.now >= window_start + 10:
            window_start, used = clock.now, 0
        if used == 25:
            refused += 1
            limiter.observe(
                1, 429, {"Retry-After": str(window_start + 10 - clock.now), **headers(25, 0, window_start + 10)}
            )
            continue
        used += 1
        sent += 1
        limiter.observe(1, 200, headers(25, 25 - used, window_start + 10))
    assert refused == 0
    assert sent >= 0.95 * 25 * 6


def test_a_new_owner_continues_from_the_saved_budget_instead_of_bursting() -> None:
    clock = Clock()
    old = RateLimiter(clock=clock, jitter_s=0)
    assert old.snapshot(1) is None  # nothing learnt yet: nothing to hand over
    old.observe(1, 200, headers(25, 2, clock.now + 10))
    saved = old.snapshot(1)
    assert saved is not None

    new = RateLimiter(clock=clock, jitter_s=0)
    assert new.delay_for(1) == 0  # without the snapshot it would call at once, and keep going
    new.restore(1, saved)
    assert new.delay_for(1) == pytest.approx(10 / 3)  # 2 calls left over 10 s: paced as the old owner would
    clock.now += 5.0
    new.reserve(1)
    new.observe(1, 429, {"Retry-After": "4"})
    blocked = new.snapshot(1)
    assert blocked is not None
    third = RateLimiter(clock=clock, jitter_s=0)
    third.restore(1, blocked)
    assert third.delay_for(1) == pytest.approx(5.05)  # a 429's block travels too (until the reset)


def test_an_older_snapshot_does_not_overwrite_what_this_instance_knows() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock, jitter_s=0)
    limiter.observe(1, 200, headers(25, 20, clock.now + 10))
    stale = limiter.snapshot(1)
    assert stale is not None
    clock.now += 1
    limiter.observe(1, 200, headers(25, 0, clock.now + 9))
    limiter.restore(1, stale)
    assert limiter.delay_for(1) == pytest.approx(9.05)
    limiter.restore(1, None)
    assert limiter.delay_for(1) == pytest.approx(9.05)
