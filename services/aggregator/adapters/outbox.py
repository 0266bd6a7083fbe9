"""Relays the transactional outbox to Kafka: at-least-once, in commit order, trace context kept."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from opentelemetry import context, propagate

from services.aggregator.adapters import repository as repo

log = logging.getLogger(__name__)

Publish = Callable[[bytes, str, str, dict[str, str]], Awaitable[None]]


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, publish: Publish, batch_size: int, poll_interval_s: float) -> None:
        self._pool = pool
        self._publish = publish
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """A transaction that wrote to the outbox committed: relay now rather than at the next poll."""
        self._wake.set()

    async def relay_once(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await repo.take_outbox(conn, self._batch_size)
            for row in rows:
                token = context.attach(propagate.extract(row["headers"]))
                try:
                    await self._publish(json.dumps(row["payload"]).encode(), row["topic"], row["key"], {})
                finally:
                    context.detach(token)
            await repo.remove_from_outbox(conn, [r["id"] for r in rows])
            return len(rows)

    async def _run(self) -> None:
        while True:
            try:
                while await self.relay_once() == self._batch_size:
                    pass
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("outbox relay failed, retrying: %r", error)
            except Exception:
                log.exception("outbox relay failed, retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)
            self._wake.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
