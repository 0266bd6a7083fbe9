"""The background task that keeps entries from staying Publishing: it re-drives overdue publish requests.

Every aggregator instance runs one. Each round claims the overdue requests with `FOR UPDATE SKIP LOCKED`
(`handlers.redrive_stalled_publishes`), so instances share the work and never re-send one request twice
in one round. While the database is away a round fails: the sweeper reports unhealthy, waits (capped
exponential backoff) and tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from shared.background import RepeatingTask

log = logging.getLogger(__name__)


class PublishSweeper(RepeatingTask):
    """`healthy` is False while rounds fail (the database is away)."""

    def __init__(self, sweep: Callable[[], Awaitable[int]], batch: int, interval_s: float) -> None:
        super().__init__(
            self.sweep_until_done, name="publish-sweeper", what="publish sweeper", log=log, interval_s=interval_s
        )
        self._sweep = sweep
        self._batch = batch

    async def sweep_until_done(self) -> int:
        """One round: claim and re-drive overdue requests until fewer than a full batch were due."""
        total = 0
        while (done := await self._sweep()) >= self._batch:
            total += done
        return total + done
