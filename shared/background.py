"""A background task that does one round of work over and over until it is stopped.

The services' pollers (the outbox relay, the aggregator's publish sweeper and remapper) share one loop: run a
round, then wait `interval_s` (or less, when woken); when a round raises, report unhealthy, log it (a transient
error — the database or the broker away — as a warning, anything else with its traceback) and try again after a
capped exponential backoff. A subclass passes its round and names, and keeps only what it does in a round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shared.transient import is_transient


class RepeatingTask:
    def __init__(
        self,
        work: Callable[[], Awaitable[object]],
        *,
        name: str,
        what: str,
        log: logging.Logger,
        interval_s: float,
        max_backoff_s: float = 30.0,
        backoff_base_s: float | None = None,
    ) -> None:
        """`work` is one round; `name` names the asyncio task, `what` the loop in log lines (logged to `log`).
        After the n-th failure in a row it waits `backoff_base_s` (default `interval_s`) * 2**n, at most
        `max_backoff_s`."""
        self._work = work
        self._name = name
        self._what = what
        self._log = log
        self._interval_s = interval_s
        self._max_backoff_s = max_backoff_s
        self._backoff_base_s = interval_s if backoff_base_s is None else backoff_base_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        """False while rounds fail."""

    def wake(self) -> None:
        """Run the next round now rather than after the interval (a round that is failing keeps its backoff)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._work()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                self.healthy = False
                delay = min(self._backoff_base_s * 2 ** min(failures, 10), self._max_backoff_s)
                if is_transient(error):
                    self._log.warning("%s paused (%r); retrying in %.1fs", self._what, error, delay)
                else:
                    self._log.exception("%s failed; retrying in %.1fs", self._what, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            self.healthy = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval_s)
            self._wake.clear()
