"""Publish requests an entry waits on (table `publish_requests`: kept for re-drives) and the entries due for
auto-publish."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from shared.events import Module
from shared.outbox import OutboxMessage


@dataclass(frozen=True)
class QueuedPublish:
    """A publish request an entry waits on, exactly as it went to the outbox."""

    entry_id: uuid.UUID
    request_id: uuid.UUID
    message: OutboxMessage


@dataclass(frozen=True)
class DuePublish:
    """A queued publish request whose result is overdue (locked by the sweeper that claimed it)."""

    entry_id: uuid.UUID
    request_id: uuid.UUID
    message: OutboxMessage | None
    """None for a request queued before requests were kept: it is rebuilt from the entry."""
    redrives: int
    waited_s: float
    current: bool
    """False when the entry no longer waits on this request (its result came, or it was published again)."""


async def keep_publish_requests(
    conn: asyncpg.Connection, queued: Sequence[QueuedPublish], redrive_after_s: float
) -> None:
    """Remember the request each entry now waits on (replacing an older one), due for a re-drive after the timeout."""
    if not queued:
        return
    await conn.execute(
        """
        INSERT INTO publish_requests (entry_id, request_id, topic, key, payload, headers, redrive_at)
        SELECT e, r, t, k, p::jsonb, h::jsonb, now() + make_interval(secs => $7)
          FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[]) AS x(e, r, t, k, p, h)
        ON CONFLICT (entry_id) DO UPDATE SET
            request_id = EXCLUDED.request_id, topic = EXCLUDED.topic, key = EXCLUDED.key, payload = EXCLUDED.payload,
            headers = EXCLUDED.headers, queued_at = now(), redrives = 0, redrive_at = EXCLUDED.redrive_at
        """,
        [q.entry_id for q in queued],
        [q.request_id for q in queued],
        [q.message.topic for q in queued],
        [q.message.key for q in queued],
        [q.message.payload for q in queued],
        [json.dumps(q.message.headers) for q in queued],
        redrive_after_s,
    )


async def forget_publish_requests(conn: asyncpg.Connection, requests: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """(entry_id, request_id) pairs answered or superseded: nothing to re-drive any more."""
    if requests:
        await conn.execute(
            """
            DELETE FROM publish_requests p USING unnest($1::uuid[], $2::uuid[]) AS x(entry_id, request_id)
             WHERE p.entry_id = x.entry_id AND p.request_id = x.request_id
            """,
            [r[0] for r in requests],
            [r[1] for r in requests],
        )


async def claim_due_publishes(conn: asyncpg.Connection, limit: int) -> list[DuePublish]:
    """Overdue publish requests, oldest first, locked for this transaction; rows another sweeper holds are
    skipped, so N aggregator instances re-drive each request once per round."""
    rows = await conn.fetch(
        """
        SELECT p.entry_id, p.request_id, p.topic, p.key, p.payload::text AS payload, p.headers::text AS headers,
               p.redrives,
               EXTRACT(EPOCH FROM now() - p.queued_at)::float8 AS waited_s,
               COALESCE(e.status = 'publishing' AND e.publishing_request_id = p.request_id, false) AS current
          FROM publish_requests p LEFT JOIN entries e ON e.entry_id = p.entry_id
         WHERE p.redrive_at <= now()
         ORDER BY p.redrive_at
         LIMIT $1
           FOR UPDATE OF p SKIP LOCKED
        """,
        limit,
    )
    return [
        DuePublish(
            entry_id=r["entry_id"],
            request_id=r["request_id"],
            message=None
            if r["payload"] is None
            else OutboxMessage(r["topic"], r["key"], r["payload"], json.loads(r["headers"])),
            redrives=r["redrives"],
            waited_s=r["waited_s"],
            current=r["current"],
        )
        for r in rows
    ]


async def publishes_redriven(
    conn: asyncpg.Connection, redriven: Sequence[tuple[uuid.UUID, OutboxMessage, float]]
) -> None:
    """(entry_id, the request as sent again, seconds until the next re-drive) rows."""
    if redriven:
        await conn.execute(
            """
            UPDATE publish_requests p
               SET redrives = p.redrives + 1, topic = x.t, key = x.k, payload = x.p::jsonb, headers = x.h::jsonb,
                   redrive_at = now() + make_interval(secs => x.delay)
              FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[])
                   AS x(entry_id, t, k, p, h, delay)
             WHERE p.entry_id = x.entry_id
            """,
            [r[0] for r in redriven],
            [r[1].topic for r in redriven],
            [r[1].key for r in redriven],
            [r[1].payload for r in redriven],
            [json.dumps(r[1].headers) for r in redriven],
            [r[2] for r in redriven],
        )


async def claim_auto_publish(conn: asyncpg.Connection, limit: int) -> list[tuple[str, Module, list[uuid.UUID]]]:
    """(account, module, entries) to auto-publish now: To do and Updated entries of the modules an account opted in
    for, unchanged for the minutes it chose; locked, skipping entries another instance holds. Only opted-in
    accounts' entries are read (through their (account, module) index)."""
    rows = await conn.fetch(
        """
        SELECT e.account_id, e.module, e.entry_id
          FROM setups s
         CROSS JOIN LATERAL jsonb_each_text(s.auto_publish) AS a(module, minutes)
          JOIN entries e ON e.account_id = s.account_id AND e.module = a.module
         WHERE s.auto_publish <> '{}' AND a.module = ANY(s.enabled_modules)
           AND e.status IN ('todo', 'updated')
           AND e.updated_at <= now() - make_interval(mins => a.minutes::int)
         ORDER BY e.entry_id
         LIMIT $1
           FOR UPDATE OF e SKIP LOCKED
        """,
        limit,
    )
    found: dict[tuple[str, Module], list[uuid.UUID]] = {}
    for r in rows:
        found.setdefault((r["account_id"], Module(r["module"])), []).append(r["entry_id"])
    return [(account, module, ids) for (account, module), ids in sorted(found.items())]
