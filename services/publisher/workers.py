"""Per-company workers over the attempt log: each company's requests in arrival order, companies side by side.

The Kafka subscriber only stores a request and wakes its company's worker, so a company
that waits out a rate limit (or a slow Procore) never holds up another company's
requests or the consumer. A worker waits for its company's budget *before* taking one of
`max_active` slots, so companies that are waiting do not crowd out the ones that may go.
Only one publisher process works at a time (a PostgreSQL advisory lock): Procore's budgets
are per company, and one process keeps one scheduler per company.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg

from services.publisher.adapters.attempts import Pending

log = logging.getLogger(__name__)


class CompanyWorkers:
    def __init__(
        self,
        pending: Callable[[int, int], Awaitable[list[Pending]]],
        companies: Callable[[], Awaitable[list[int]]],
        process: Callable[[Pending], Awaitable[object]],
        ready: Callable[[int], Awaitable[None]],
        max_active: int = 64,
        batch_size: int = 100,
        retry_delay_s: float = 1.0,
    ) -> None:
        self._pending = pending
        self._companies = companies
        self._process = process
        self._ready = ready
        self._active = asyncio.Semaphore(max_active)
        self._batch_size = batch_size
        self._retry_delay_s = retry_delay_s
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()
        self._running = False

    def wake(self, company_id: int) -> None:
        """New work for a company: start its worker, or make the running one look again."""
        self._dirty.add(company_id)
        if self._running and company_id not in self._tasks:
            self._tasks[company_id] = asyncio.create_task(self._work(company_id), name=f"publisher-{company_id}")

    async def start(self) -> None:
        """Begin with whatever was left unfinished (a restart resumes and reconciles it)."""
        self._running = True
        for company_id in {*await self._companies(), *self._dirty}:
            self.wake(company_id)

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self, company_id: int) -> None:
        try:
            while self._running:
                self._dirty.discard(company_id)
                batch = await self._pending(company_id, self._batch_size)
                if not batch:
                    if company_id in self._dirty:
                        continue
                    break
                for item in batch:
                    await self._ready(company_id)
                    async with self._active:
                        await self._process(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("publisher worker for company %s failed; retrying", company_id)
            await asyncio.sleep(self._retry_delay_s)
            self._dirty.add(company_id)
        finally:
            self._tasks.pop(company_id, None)
            if self._running and company_id in self._dirty:
                self.wake(company_id)


@contextlib.asynccontextmanager
async def single_active(dsn: str, name: str, poll_s: float = 1.0) -> AsyncIterator[asyncpg.Connection]:
    """Hold a PostgreSQL advisory lock for as long as the context lasts (waiting for it first)."""
    conn = await asyncpg.connect(dsn)
    try:
        while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", name):  # noqa: ASYNC110
            await asyncio.sleep(poll_s)  # another publisher holds it: poll, nothing would notify us
        yield conn
    finally:
        await conn.close()
