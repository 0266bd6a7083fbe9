"""Each token's rate budget in PostgreSQL, so that every instance paces the token's calls together.

`SharedTokenLimiter` is the process's rate limiter with one step more for a token's budget: after its own pacing
(which knows only this process's calls), a call takes its turn in the token's row — locked for the few statements
that decide, so two instances never take the same turn — and an answer's numbers are written back. Budgets of one
company (`PROCORE_RATE_LIMIT_SCOPE=company`) stay in the process: the company's lease keeps them to one instance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Mapping
from typing import Any

import asyncpg

from services.publisher.budgets import SharedBudget, due_at, learn, shared_name, take
from shared.procore import RateLimiter

log = logging.getLogger(__name__)

_LOCKED = (
    "INSERT INTO token_budgets (budget_key) VALUES ($1)"
    " ON CONFLICT (budget_key) DO UPDATE SET budget_key = EXCLUDED.budget_key"
    " RETURNING remaining, reset_at, blocked_until, next_at"
)
_SAVE = (
    "UPDATE token_budgets SET remaining = $2, reset_at = $3, blocked_until = $4, next_at = $5, updated_at = now()"
    " WHERE budget_key = $1"
)


def _budget(row: Mapping[str, Any]) -> SharedBudget:
    return SharedBudget(row["remaining"], row["reset_at"], row["blocked_until"], row["next_at"])


class TokenBudgetStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def _save(self, conn: asyncpg.Connection, name: str, b: SharedBudget) -> None:
        await conn.execute(_SAVE, name, b.remaining, b.reset_at, b.blocked_until, b.next_at)

    async def take(self, name: str, now: float, margin_s: float) -> float:
        """Take the token's next turn if it is due (0.0), else the seconds until it may be (nothing taken)."""
        async with self._pool.acquire() as conn, conn.transaction():
            budget = _budget(await conn.fetchrow(_LOCKED, name))
            due = due_at(budget, now, margin_s)
            if due > now:
                return due - now
            await self._save(conn, name, take(budget, now, margin_s))
        return 0.0

    async def learn(
        self, name: str, now: float, margin_s: float, remaining: int | None, reset_at: float, blocked_until: float
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            budget = _budget(await conn.fetchrow(_LOCKED, name))
            merged = learn(budget, now, margin_s, remaining=remaining, reset_at=reset_at, blocked_until=blocked_until)
            await self._save(conn, name, merged)


class SharedTokenLimiter(RateLimiter):
    def __init__(self, store: TokenBudgetStore, **options: Any) -> None:
        super().__init__(**options)
        self._store = store
        self._writes: set[asyncio.Task[None]] = set()

    async def acquire(self, company_id: Hashable) -> None:
        await super().acquire(company_id)
        name = shared_name(company_id)
        if name is None:
            return
        try:
            while (wait := await self._store.take(name, self._clock(), self._margin_s)) > 0:
                await self._sleep(wait)
        except BaseException:
            self.release(company_id)  # no call made: give the slot back (the database away: the round fails)
            raise

    def observe(self, company_id: Hashable, status: int, headers: Mapping[str, str]) -> None:
        super().observe(company_id, status, headers)
        name = shared_name(company_id)
        if name is None:
            return
        lowered = {k.lower() for k in headers}
        b = self.budget(company_id)
        counted = "x-rate-limit-remaining" in lowered or status == 429
        task = asyncio.create_task(self._learn(name, b.remaining if counted else None, b.reset_at, b.blocked_until))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _learn(self, name: str, remaining: int | None, reset_at: float, blocked_until: float) -> None:
        try:
            await self._store.learn(name, self._clock(), self._margin_s, remaining, reset_at, blocked_until)
        except Exception as error:  # the next turn taken counts the call anyway; a later answer tells again
            log.warning("could not save the budget of token %s: %r", name, error)

    async def drain(self) -> None:
        """Wait for the answers' numbers still being written (at shutdown)."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
