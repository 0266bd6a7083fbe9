"""Procore's two simultaneous rate limits (hourly and 10-second spike), as fixed windows per key."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

HOUR_S = 3600.0
SPIKE_S = 10.0
OLD_429_MESSAGE = "You have surpassed the max number of requests for an hour. Please wait until your limit resets."


@dataclass(frozen=True)
class RateLimitConfig:
    hourly: int = 3600
    spike: int = 100
    # Scales both window lengths (e.g. 0.01 turns the hour into 36 s) so benchmarks can hit resets quickly.
    time_scale: float = 1.0

    @property
    def hourly_window_s(self) -> float:
        return HOUR_S * self.time_scale

    @property
    def spike_window_s(self) -> float:
        return SPIKE_S * self.time_scale


@dataclass
class _Window:
    limit: int
    length_s: float
    started_at: float = 0.0
    count: int = 0

    def roll(self, now: float) -> None:
        if self.count == 0 or now >= self.started_at + self.length_s:
            self.started_at = now
            self.count = 0

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    @property
    def reset_at(self) -> float:
        return self.started_at + self.length_s


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # Unix seconds (ceil), as in X-Rate-Limit-Reset
    retry_after: int  # seconds until the blocking window resets (0 when allowed)

    def headers(self) -> dict[str, str]:
        return {
            "X-Rate-Limit-Limit": str(self.limit),
            "X-Rate-Limit-Remaining": str(self.remaining),
            "X-Rate-Limit-Reset": str(self.reset),
        }


@dataclass
class _KeyWindows:
    hourly: _Window
    spike: _Window


@dataclass
class RateLimiter:
    """Counts requests per key (e.g. (client_id, company_id)); a rejected request does not count."""

    config: RateLimitConfig = field(default_factory=RateLimitConfig)
    clock: Callable[[], float] = time.time
    _keys: dict[Hashable, _KeyWindows] = field(default_factory=dict)

    def reconfigure(self, config: RateLimitConfig) -> None:
        self.config = config
        self._keys.clear()

    def reset(self) -> None:
        self._keys.clear()

    def _windows(self, key: Hashable) -> _KeyWindows:
        windows = self._keys.get(key)
        if windows is None:
            windows = _KeyWindows(
                hourly=_Window(self.config.hourly, self.config.hourly_window_s),
                spike=_Window(self.config.spike, self.config.spike_window_s),
            )
            self._keys[key] = windows
        return windows

    def hit(self, key: Hashable) -> RateDecision:
        now = self.clock()
        kw = self._windows(key)
        windows = (kw.spike, kw.hourly)
        for w in windows:
            w.roll(now)
        exhausted = [w for w in windows if w.remaining == 0]
        if exhausted:
            blocking = max(exhausted, key=lambda w: w.reset_at)
            return RateDecision(
                allowed=False,
                limit=blocking.limit,
                remaining=0,
                reset=math.ceil(blocking.reset_at),
                retry_after=max(1, math.ceil(blocking.reset_at - now)),
            )
        for w in windows:
            w.count += 1
        # Report whichever window is closer to exhaustion (fewest requests left; spike wins ties).
        reported = min(windows, key=lambda w: w.remaining)
        return RateDecision(
            allowed=True,
            limit=reported.limit,
            remaining=reported.remaining,
            reset=math.ceil(reported.reset_at),
            retry_after=0,
        )
