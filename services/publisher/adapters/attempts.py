"""The attempt log: the publisher's durable inbox and its memory of what it did in Procore.

One row per publish request. `queued` when stored (before the Kafka offset is committed),
`started` once a worker began sending it to Procore (a later round — after a crash, a takeover,
or while Procore or the database was away — finds it so and reconciles before writing again),
`done` with the result. The result's `ProcorePublishFinished` is queued in the outbox in the
transaction that stores it.

Every write made while working a request is *fenced*: one statement that share-locks the
company's lease row holding the fencing token the worker got when it claimed the company, and
changes nothing otherwise. When another instance has taken the company over, the write is refused
(`LeaseLost`) — and a takeover waits for a fenced write in progress to commit, so none slips in
after it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.publisher.lease import Lease, LeaseLost
from shared.events import ProcorePublishFinished, PublishToProcore
from shared.outbox import OutboxMessage, add_to_outbox

WORKABLE = "state <> 'done' AND request IS NOT NULL AND company_id IS NOT NULL"
"""A request a worker still has to carry out (one definition for every query that asks)."""

_FENCE = "fence AS (SELECT 1 FROM company_leases WHERE company_id = $2 AND fencing_token = $3 FOR SHARE)"
"""The fencing CTE of every write made while working a request ($2 company, $3 token): it share-locks the lease
row for the rest of the statement's transaction, so a takeover waits for the write, or the write sees it."""


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


def result_message(topic: str, result: ProcorePublishFinished, trace: dict[str, str]) -> OutboxMessage:
    """The outbox row of one result: keyed by entry (one entry's results stay in order), in the request's trace."""
    return OutboxMessage(topic, f"{result.account_id}:{result.entry_id}", result.model_dump_json(), trace)


class AttemptLog:
    def __init__(self, pool: asyncpg.Pool, results_topic: str) -> None:
        self._pool = pool
        self._results_topic = results_topic

    async def receive(self, incoming: list[tuple[PublishToProcore, dict[str, str]]]) -> list[Received]:
        """Store each request once (one statement per batch); a redelivered one comes back as it stands.

        A request that is already done has its stored result queued again (in the same transaction),
        in the trace of the delivery that asked again."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                WITH incoming AS (
                    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                                         $7::text[]) WITH ORDINALITY
                        AS t(request_id, entry_id, account_id, operation, company_id, request, trace, position)
                ), inserted AS (
                    INSERT INTO attempts (request_id, entry_id, account_id, operation, state, company_id, request,
                                          trace)
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
            received = [Received(r["new"], r["state"], r["result"]) for r in rows]
            again = [
                result_message(self._results_topic, ProcorePublishFinished.model_validate(got.result), trace)
                for (_, trace), got in zip(incoming, received, strict=True)
                if got.state == "done" and got.result is not None
            ]
            await add_to_outbox(conn, again)
        return received

    async def pending_companies(self) -> list[int]:
        rows = await self._pool.fetch(f"SELECT DISTINCT company_id FROM attempts WHERE {WORKABLE}")
        return [r["company_id"] for r in rows]

    async def next_pending(self, company_id: int, limit: int) -> list[Pending]:
        """The company's unfinished requests, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT request, state, tries, trace FROM attempts WHERE company_id = $1 AND {WORKABLE}"
            " ORDER BY seq LIMIT $2",
            company_id,
            limit,
        )
        return [
            Pending(PublishToProcore.model_validate(r["request"]), r["state"], r["tries"], r["trace"] or {})
            for r in rows
        ]

    async def _refused(self, lease: Lease) -> LeaseLost:
        """Why a fenced write changed nothing: the lease moved on (anything else is a bug)."""
        held = await self._pool.fetchval(
            "SELECT true FROM company_leases WHERE company_id = $1 AND fencing_token = $2",
            lease.company_id,
            lease.token,
        )
        if held:
            raise AssertionError(f"a fenced write found no request to change (company {lease.company_id})")
        lease.lost = True
        return LeaseLost(f"company {lease.company_id}: lease {lease.token} was taken over")

    async def start(self, request_id: uuid.UUID, lease: Lease) -> Started:
        """Mark a request started; recovering when it was started before, or its entry has an uncertain create."""
        row = await self._pool.fetchrow(
            f"""
            WITH {_FENCE}, before AS (
                SELECT state, entry_id FROM attempts WHERE request_id = $1 AND EXISTS (SELECT 1 FROM fence) FOR UPDATE
            )
            UPDATE attempts a SET state = 'started', tries = a.tries + 1, fencing_token = $3
            FROM before
            WHERE a.request_id = $1
            RETURNING a.tries, before.state AS state_before,
                EXISTS (SELECT 1 FROM attempts u WHERE u.entry_id = before.entry_id AND u.uncertain
                        AND u.request_id <> $1) AS uncertain_entry,
                EXISTS (SELECT 1 FROM attempts d WHERE d.entry_id = before.entry_id
                        AND d.deleted_procore_id = (a.request->>'procore_id')::bigint) AS deleted_by_us
            """,
            request_id,
            lease.company_id,
            lease.token,
        )
        if row is None:
            raise await self._refused(lease)
        return Started(row["tries"], row["state_before"] == "started" or row["uncertain_entry"], row["deleted_by_us"])

    async def note_deleted(self, request_id: uuid.UUID, procore_id: int, lease: Lease) -> None:
        """The old record of a replace is deleted (by us); the new one is not created yet."""
        done = await self._pool.fetchval(
            f"""
            WITH {_FENCE}
            UPDATE attempts SET deleted_procore_id = $4, fencing_token = $3
            WHERE request_id = $1 AND EXISTS (SELECT 1 FROM fence)
            RETURNING true
            """,
            request_id,
            lease.company_id,
            lease.token,
            procore_id,
        )
        if not done:
            raise await self._refused(lease)

    async def note_error(self, request_id: uuid.UUID, message: str, lease: Lease) -> int:
        """Count a round that ended in a Procore 500 (or an unexpected error); returns the count so far."""
        errors: int | None = await self._pool.fetchval(
            f"""
            WITH {_FENCE}
            UPDATE attempts SET errors = errors + 1, last_error = $4, fencing_token = $3
            WHERE request_id = $1 AND EXISTS (SELECT 1 FROM fence)
            RETURNING errors
            """,
            request_id,
            lease.company_id,
            lease.token,
            message,
        )
        if errors is None:
            raise await self._refused(lease)
        return errors

    async def finish(
        self,
        result: ProcorePublishFinished,
        lease: Lease,
        trace: dict[str, str],
        *,
        uncertain: bool = False,
        reconciled: bool = False,
    ) -> bool:
        """Store the result and queue its event, in one statement. False when the request was already done.

        `uncertain`: a create may have landed unseen; `reconciled`: we looked for such records."""
        message = result_message(self._results_topic, result, trace)
        row = await self._pool.fetchrow(
            f"""
            WITH {_FENCE}, done AS (
                UPDATE attempts SET state = 'done', procore_id = $4, result = $5::text::jsonb, finished_at = now(),
                                    uncertain = $6, emitted_at = now(), fencing_token = $3
                WHERE request_id = $1 AND state <> 'done' AND EXISTS (SELECT 1 FROM fence)
                RETURNING entry_id
            ), found AS (
                -- whatever an earlier create of this entry left behind has been found (or was never made)
                UPDATE attempts SET uncertain = false
                WHERE $7 AND NOT $6 AND uncertain AND request_id <> $1 AND entry_id = (SELECT entry_id FROM done)
            ), queued AS (
                -- the shared outbox (shared/outbox.py): sent by OutboxRelay once this commits
                INSERT INTO outbox (topic, key, payload, headers)
                SELECT $8, $9, $5::text::jsonb, $10::text::jsonb FROM done
            )
            SELECT EXISTS (SELECT 1 FROM fence) AS held, EXISTS (SELECT 1 FROM done) AS finished
            """,
            result.request_id,
            lease.company_id,
            lease.token,
            result.procore_id,
            message.payload,
            uncertain,
            reconciled,
            message.topic,
            message.key,
            json.dumps(message.headers),
        )
        assert row is not None
        if not row["held"]:
            lease.lost = True
            raise LeaseLost(f"company {lease.company_id}: lease {lease.token} was taken over")
        return bool(row["finished"])

    async def queue_unemitted(self) -> int:
        """Queue in the outbox the results an earlier version stored but never sent (it emitted after commit)."""
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                """
                WITH left_over AS (
                    UPDATE attempts SET emitted_at = now()
                    WHERE state = 'done' AND emitted_at IS NULL AND result IS NOT NULL
                    RETURNING seq, result, trace
                )
                INSERT INTO outbox (topic, key, payload, headers)
                SELECT $1, (result->>'account_id') || ':' || (result->>'entry_id'), result, trace
                FROM left_over ORDER BY seq
                """,
                self._results_topic,
            )
        return int(status.split()[-1])
