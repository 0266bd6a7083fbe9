"""The attempt log: the publisher's durable inbox and its memory of what it did in Procore.

One row per publish request. `queued` when stored (before the Kafka offset is committed),
`started` once a worker began sending it to Procore (a restart finds these and reconciles
before retrying), `done` with the result; `emitted_at` once the result went out.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.events import PublishToProcore


@dataclass(frozen=True)
class Received:
    new: bool
    state: str
    result: dict[str, Any] | None


@dataclass(frozen=True)
class Pending:
    request: PublishToProcore
    state: str
    tries: int
    trace: dict[str, str]


@dataclass(frozen=True)
class Started:
    tries: int
    """How many times processing started, this one included."""
    recovering: bool
    """An earlier try (or an earlier create of the same entry) may have written to Procore unrecorded."""
    deleted_by_us: bool = False
    """The record this request targets was deleted by an earlier replace of the same entry."""


@dataclass(frozen=True)
class Unemitted:
    result: dict[str, Any]
    trace: dict[str, str]


class AttemptLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def receive(self, incoming: list[tuple[PublishToProcore, dict[str, str]]]) -> list[Received]:
        """Store each request once (one statement per batch); a redelivered one comes back as it stands."""
        rows = await self._pool.fetch(
            """
            WITH incoming AS (
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                                     $7::text[]) WITH ORDINALITY
                    AS t(request_id, entry_id, account_id, operation, company_id, request, trace, position)
            ), inserted AS (
                INSERT INTO attempts (request_id, entry_id, account_id, operation, state, company_id, request, trace)
                SELECT DISTINCT ON (request_id) request_id, entry_id, account_id, operation, 'queued', company_id,
                       request::jsonb, trace::jsonb
                FROM incoming
                ON CONFLICT (request_id) DO NOTHING
                RETURNING request_id
            ), legacy AS (
                -- a row left by the synchronous publisher (no stored request): make it workable
                UPDATE attempts a SET request = i.request::jsonb, company_id = i.company_id, trace = i.trace::jsonb
                FROM incoming i WHERE a.request_id = i.request_id AND a.request IS NULL AND a.state <> 'done'
                RETURNING a.request_id
            )
            SELECT ins.request_id IS NOT NULL AS new, COALESCE(a.state, 'queued') AS state, a.result
            FROM incoming i
            LEFT JOIN inserted ins ON ins.request_id = i.request_id
            LEFT JOIN attempts a ON a.request_id = i.request_id
            ORDER BY i.position
            """,
            [r.request_id for r, _ in incoming],
            [r.entry_id for r, _ in incoming],
            [r.account_id for r, _ in incoming],
            [r.operation.value for r, _ in incoming],
            [r.procore_company_id for r, _ in incoming],
            [r.model_dump_json() for r, _ in incoming],
            [json.dumps(t) for _, t in incoming],
        )
        return [Received(r["new"], r["state"], r["result"]) for r in rows]

    async def pending_companies(self) -> list[int]:
        rows = await self._pool.fetch(
            "SELECT DISTINCT company_id FROM attempts WHERE state <> 'done' AND company_id IS NOT NULL"
        )
        return [r["company_id"] for r in rows]

    async def next_pending(self, company_id: int, limit: int) -> list[Pending]:
        """The company's unfinished requests, oldest first."""
        rows = await self._pool.fetch(
            "SELECT request, state, tries, trace FROM attempts"
            " WHERE company_id = $1 AND state <> 'done' AND request IS NOT NULL ORDER BY seq LIMIT $2",
            company_id,
            limit,
        )
        return [
            Pending(PublishToProcore.model_validate(r["request"]), r["state"], r["tries"], r["trace"] or {})
            for r in rows
        ]

    async def start(self, request_id: uuid.UUID) -> Started:
        """Mark a request started; recovering when it was started before, or its entry has an uncertain create."""
        row = await self._pool.fetchrow(
            """
            WITH before AS (SELECT state, entry_id FROM attempts WHERE request_id = $1 FOR UPDATE)
            UPDATE attempts a SET state = 'started', tries = a.tries + 1
            FROM before
            WHERE a.request_id = $1
            RETURNING a.tries, before.state AS state_before,
                EXISTS (SELECT 1 FROM attempts u WHERE u.entry_id = before.entry_id AND u.uncertain
                        AND u.request_id <> $1) AS uncertain_entry,
                EXISTS (SELECT 1 FROM attempts d WHERE d.entry_id = before.entry_id
                        AND d.deleted_procore_id = (a.request->>'procore_id')::bigint) AS deleted_by_us
            """,
            request_id,
        )
        assert row is not None
        return Started(row["tries"], row["state_before"] == "started" or row["uncertain_entry"], row["deleted_by_us"])

    async def note_deleted(self, request_id: uuid.UUID, procore_id: int) -> None:
        """The old record of a replace is deleted (by us); the new one is not created yet."""
        await self._pool.execute(
            "UPDATE attempts SET deleted_procore_id = $2 WHERE request_id = $1", request_id, procore_id
        )

    async def finish(
        self,
        request_id: uuid.UUID,
        procore_id: int | None,
        result: dict[str, Any],
        *,
        uncertain: bool = False,
        reconciled: bool = False,
    ) -> None:
        """Store the result. `uncertain`: a create may have landed unseen; `reconciled`: we looked for such records."""
        await self._pool.execute(
            """
            WITH done AS (
                UPDATE attempts SET state = 'done', procore_id = $2, result = $3::text::jsonb, finished_at = now(),
                                    uncertain = $4
                WHERE request_id = $1
                RETURNING entry_id
            )
            -- whatever an earlier create of this entry left behind has been found (or was never made)
            UPDATE attempts SET uncertain = false
            WHERE $5 AND NOT $4 AND uncertain AND request_id <> $1 AND entry_id = (SELECT entry_id FROM done)
            """,
            request_id,
            procore_id,
            json.dumps(result),
            uncertain,
            reconciled,
        )

    async def mark_emitted(self, request_id: uuid.UUID) -> None:
        await self._pool.execute("UPDATE attempts SET emitted_at = now() WHERE request_id = $1", request_id)

    async def unemitted(self, older_than_s: float, limit: int = 500) -> list[Unemitted]:
        rows = await self._pool.fetch(
            "SELECT result, trace FROM attempts WHERE state = 'done' AND emitted_at IS NULL"
            " AND finished_at < now() - make_interval(secs => $1) ORDER BY seq LIMIT $2",
            older_than_s,
            limit,
        )
        return [Unemitted(r["result"], r["trace"] or {}) for r in rows]
