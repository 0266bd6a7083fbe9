"""The background task that keeps entries from staying Publishing: it re-drives overdue publish requests.

Every aggregator instance runs one. Each round claims the overdue requests with `FOR UPDATE SKIP LOCKED`
(`handlers.redrive_stalled_publishes`), so instances share the work and never re-send one request twice
in one round. While the database is away a round fails: the sweeper reports unhealthy, waits (capped
exponential backoff) and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from shared.transient import is_transient

log = logging.getLogger(__name__)


class PublishSweeper:
    def __init__(
        self,
        sweep: Callable[[], Awaitable[int]],
        batch: int,
        interval_s: float,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._sweep = sweep
        self._batch = batch
        self._interval_s = interval_s
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        """False while rounds fail (the database is away)."""

    async def sweep_until_done(self) -> int:
        """One round: claim and re-drive overdue requests until fewer than a full batch were due."""
        total = 0
        while (done := await self._sweep()) >= self._batch:
            total += done
        return total + done

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self.sweep_until_done()
                failures = 0
                self.healthy = True
                delay = self._interval_s
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                self.healthy = False
                delay = min(self._interval_s * 2 ** min(failures, 10), self._max_backoff_s)
                if is_transient(error):
                    log.warning("publish sweeper paused (%r); retrying in %.1fs", error, delay)
                else:
                    log.exception("publish sweeper failed; retrying in %.1fs", delay)
            await asyncio.sleep(delay)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="publish-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
