"""The transactional outbox every service uses: an event is stored with the change that causes it.

A service writes the events a database change causes into its own schema's `outbox` table in
the *same* transaction as the change (`add_to_outbox`), so a crash between commit and send
cannot lose them. `OutboxRelay` sends them to Kafka and deletes them: at-least-once (a relay
that dies after sending and before deleting sends again; every consumer is idempotent).

Several instances of a service may run a relay each: one relay sends at a time (a
transaction-scoped advisory lock per schema), so rows leave in the order they were written,
and two relays never send the same row twice at once.

The table (each service's migrations create it in its own schema):

    CREATE TABLE outbox (
        id bigserial PRIMARY KEY, topic text NOT NULL, key text NOT NULL,
        payload jsonb NOT NULL, headers jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now());
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from opentelemetry import context, propagate

from shared import metrics
from shared.background import RepeatingTask

log = logging.getLogger(__name__)

Publish = Callable[[bytes, str, str, dict[str, str]], Awaitable[None]]
"""(body, topic, key, headers) → sent to Kafka (awaits the broker's acknowledgement)."""


@dataclass(frozen=True)
class OutboxMessage:
    topic: str
    key: str
    payload: str
    """JSON text of the event."""
    headers: dict[str, str] = field(default_factory=dict)
    """Usually the W3C trace context of the transaction that wrote it."""


def trace_headers() -> dict[str, str]:
    """The current trace context, to store with an outbox row so the event continues the trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


async def add_to_outbox(conn: asyncpg.Connection, messages: Sequence[OutboxMessage]) -> None:
    """Store events in the caller's transaction (they are sent only if it commits)."""
    if messages:
        await conn.execute(
            """
            INSERT INTO outbox (topic, key, payload, headers)
            SELECT t, k, p::jsonb, h::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS x(t, k, p, h)
            """,
            [m.topic for m in messages],
            [m.key for m in messages],
            [m.payload for m in messages],
            [json.dumps(m.headers) for m in messages],
        )


async def backlog(conn: asyncpg.Connection) -> tuple[int, float]:
    """(rows waiting, age in seconds of the oldest): what an operator watches."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age FROM outbox"
    )
    assert row is not None
    return int(row["n"]), float(row["age"])


class OutboxRelay(RepeatingTask):
    """`healthy` is False while sending fails (the broker or the database is away)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        publish: Publish,
        lock_name: str,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        max_backoff_s: float = 30.0,
        backlog_interval_s: float = 5.0,
    ) -> None:
        super().__init__(
            self.relay_all,
            name=f"outbox-relay:outbox:{lock_name}",
            what="outbox relay",
            log=log,
            interval_s=poll_interval_s,
            max_backoff_s=max_backoff_s,
            backoff_base_s=0.2,
        )
        self._pool = pool
        self._publish = publish
        self._lock_name = f"outbox:{lock_name}"
        self._batch_size = batch_size
        self._name = lock_name
        self._backlog_interval_s = backlog_interval_s
        self._backlog_at = 0.0

    def notify(self) -> None:
        """A transaction that wrote to the outbox committed: relay now rather than at the next poll."""
        self.wake()

    async def relay_all(self) -> None:
        """One round: measure the backlog (before sending: a stuck relay shows it), then send until it is empty."""
        with contextlib.suppress(Exception):
            await self.measure_backlog()
        while await self.relay_once() == self._batch_size:
            pass

    async def relay_once(self) -> int:
        """Send one batch in order and delete it; 0 when empty or when another relay is sending."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", self._lock_name):
                return 0
            rows = await conn.fetch(
                "SELECT id, topic, key, payload::text AS payload, headers FROM outbox ORDER BY id LIMIT $1",
                self._batch_size,
            )
            for row in rows:
                token = context.attach(propagate.extract(row["headers"] or {}))
                try:
                    await self._publish(row["payload"].encode(), row["topic"], row["key"], {})
                finally:
                    context.detach(token)
            if rows:
                await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows])
                metrics.OUTBOX_SENT.labels(self._name).inc(len(rows))
            return len(rows)

    async def measure_backlog(self) -> None:
        """Update the backlog gauges (rows waiting, age of the oldest), at most every `backlog_interval_s`."""
        now = asyncio.get_running_loop().time()
        if now - self._backlog_at < self._backlog_interval_s:
            return
        self._backlog_at = now
        async with self._pool.acquire() as conn:
            waiting, age = await backlog(conn)
        metrics.OUTBOX_BACKLOG.labels(self._name).set(waiting)
        metrics.OUTBOX_AGE.labels(self._name).set(age)
