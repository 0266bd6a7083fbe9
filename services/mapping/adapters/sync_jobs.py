"""Sync jobs in PostgreSQL: queued by the sync command, run by whichever instance claims them (a lease).

A job is claimable when it is queued, or when its runner's lease ran out (the instance vanished). The
runner renews its leases and writes each job's progress (`progress_done`/`progress_total`, `waiting_until`
while it waits for Procore's rate limit) as it goes; every write names the owner, so an instance whose
lease moved on changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

OPEN = ("queued", "running", "waiting")


class JobLost(Exception):
    """The job's lease moved on to another instance (or the job ended): this runner must not finish it."""


@dataclass(frozen=True)
class ClaimedJob:
    job_id: UUID
    account_id: str
    command: dict[str, Any]


@dataclass(frozen=True)
class JobProgress:
    job_id: UUID
    state: str
    done: int
    total: int | None
    waiting_until: datetime | None
    error: str | None


async def enqueue(
    db: asyncpg.Connection,
    job_id: UUID,
    account_id: str,
    entity: str,
    command: dict[str, Any],
    requested_by: str | None,
) -> bool:
    """Queue a job for a sync command; False when the command already has one (a redelivery)."""
    tag = await db.execute(
        "INSERT INTO sync_jobs (job_id, account_id, entity, command, requested_by) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (job_id) DO NOTHING",
        job_id,
        account_id,
        entity,
        command,
        requested_by,
    )
    return bool(tag.endswith(" 1"))


async def has_open(db: asyncpg.Connection, account_id: str) -> bool:
    """The account has a job not finished yet (commands that depend on its result queue behind it)."""
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM sync_jobs WHERE account_id = $1"
            " AND state IN ('queued', 'running', 'waiting'))",
            account_id,
        )
    )


async def finish(db: asyncpg.Connection, job_id: UUID, owner: str, state: str, error: str | None) -> None:
    """End `owner`'s job (in the caller's transaction: the one that records its outcome). Raises `JobLost` when it
    is not `owner`'s (any more)."""
    tag = await db.execute(
        "UPDATE sync_jobs SET state = $3, error = $4, owner = NULL, lease_until = NULL, waiting_until = NULL,"
        " finished_at = now(), updated_at = now(),"
        " progress_done = CASE WHEN $3 = 'done' THEN COALESCE(progress_total, progress_done) ELSE progress_done END"
        " WHERE job_id = $1 AND owner = $2 AND state IN ('queued', 'running', 'waiting')",
        job_id,
        owner,
        state,
        error,
    )
    if not tag.endswith(" 1"):
        raise JobLost(str(job_id))


class SyncJobStore:
    def __init__(self, pool: asyncpg.Pool, owner: str, lease_s: float) -> None:
        self._pool = pool
        self.owner = owner
        self._lease_s = lease_s

    async def claim(self, limit: int) -> list[ClaimedJob]:
        """Claim up to `limit` jobs, oldest first, at most one per account at a time (syncs of one account run
        in order: each diffs against what the one before committed)."""
        if limit <= 0:
            return []
        rows = await self._pool.fetch(
            """
            UPDATE sync_jobs j
            SET owner = $1, lease_until = now() + make_interval(secs => $2),
                state = CASE WHEN j.state = 'queued' THEN 'running' ELSE j.state END,
                started_at = COALESCE(j.started_at, now()), attempts = j.attempts + 1, updated_at = now()
            FROM (
                SELECT c.job_id FROM sync_jobs c
                WHERE c.state IN ('queued', 'running', 'waiting')
                  AND (c.owner IS NULL OR c.lease_until < now())
                  AND NOT EXISTS (  -- the oldest open job of its account
                      SELECT 1 FROM sync_jobs o WHERE o.account_id = c.account_id
                        AND o.state IN ('queued', 'running', 'waiting')
                        AND (o.created_at, o.job_id) < (c.created_at, c.job_id))
                ORDER BY c.created_at
                LIMIT $3
                FOR UPDATE SKIP LOCKED
            ) free
            WHERE j.job_id = free.job_id
            RETURNING j.job_id, j.account_id, j.command
            """,
            self.owner,
            self._lease_s,
            limit,
        )
        return [ClaimedJob(r["job_id"], r["account_id"], _json(r["command"])) for r in rows]

    async def report(self, progress: list[JobProgress]) -> set[UUID]:
        """Renew the leases of the jobs running here and write their progress; returns the jobs still ours."""
        if not progress:
            return set()
        rows = await self._pool.fetch(
            """
            UPDATE sync_jobs j
            SET lease_until = now() + make_interval(secs => $7), state = x.state, progress_done = x.done,
                progress_total = x.total, waiting_until = x.waiting_until, error = x.error, updated_at = now()
            FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::timestamptz[], $6::text[])
                AS x(job_id, state, done, total, waiting_until, error)
            WHERE j.job_id = x.job_id AND j.owner = $8 AND j.state IN ('queued', 'running', 'waiting')
            RETURNING j.job_id
            """,
            [p.job_id for p in progress],
            [p.state for p in progress],
            [p.done for p in progress],
            [p.total for p in progress],
            [p.waiting_until for p in progress],
            [p.error for p in progress],
            self._lease_s,
            self.owner,
        )
        return {r["job_id"] for r in rows}

    async def finish(self, db: asyncpg.Connection, job_id: UUID, state: str, error: str | None) -> None:
        """End the job (in the transaction that records its outcome). Raises `JobLost` when it is not ours."""
        await finish(db, job_id, self.owner, state, error)

    async def release(self, job_ids: list[UUID]) -> None:
        """Give unfinished jobs back (stopping): another instance takes them up at once."""
        if job_ids:
            await self._pool.execute(
                "UPDATE sync_jobs SET owner = NULL, lease_until = NULL, updated_at = now()"
                " WHERE job_id = ANY($1::uuid[]) AND owner = $2",
                job_ids,
                self.owner,
            )


def _json(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str) else value
    return dict(loaded)
