"""The background task that carries out debounced remaps: mapping and setup changes mark entries (issue 11), and
this re-checks each account's marked entries once its marks are quiet (`handlers.remap_round`).

Every aggregator instance runs one, on a connection of its own, never in the consumers' way: a round takes a
session lock per account (so an account is remapped by one instance at a time, and a crashed instance's round is
taken over), holds row locks on one chunk of entries at a time and no account lock. While the database is away
a poll fails: the remapper reports unhealthy, waits (capped exponential backoff) and tries again; the marks wait
in their table.
"""

from __future__ import annotations

import logging

import asyncpg

from services.aggregator import handlers
from services.aggregator.adapters.remap_marks import due_remaps
from services.aggregator.adapters.store import Store
from shared.background import RepeatingTask

log = logging.getLogger(__name__)


class Remapper(RepeatingTask):
    """`healthy` is False while rounds fail (the database is away)."""

    def __init__(self, pool: asyncpg.Pool, policy: handlers.RemapPolicy, poll_interval_s: float) -> None:
        super().__init__(self.remap_due, name="remapper", what="remapper", log=log, interval_s=poll_interval_s)
        self._pool = pool
        self._policy = policy

    async def remap_due(self) -> list[handlers.RemapRound]:
        """One poll: a round for each account whose marks are due (oldest first)."""
        done: list[handlers.RemapRound] = []
        async with self._pool.acquire() as conn:
            for account_id in await due_remaps(conn, self._policy.quiet_s, self._policy.max_delay_s, 20):
                remapped = await handlers.remap_round(Store(conn), account_id, self._policy)
                if remapped is not None:
                    done.append(remapped)
                    log.info(
                        "remapped account %s: %d marks, %d groups in %d chunks",
                        account_id,
                        remapped.marks,
                        remapped.groups,
                        remapped.chunks,
                    )
        return done
