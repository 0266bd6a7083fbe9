"""The attempt log: what the publisher has started and finished, per publish request."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Attempt:
    state: str
    tries: int
    procore_id: int | None
    result: dict[str, Any] | None


class AttemptLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def begin(self, request_id: uuid.UUID, entry_id: uuid.UUID, account_id: str, operation: str) -> Attempt:
        """Record that we start (again); returns the attempt as it stood before this call."""
        row = await self._pool.fetchrow(
            """
            INSERT INTO attempts (request_id, entry_id, account_id, operation, state)
            VALUES ($1, $2, $3, $4, 'started')
            ON CONFLICT (request_id) DO UPDATE SET tries = attempts.tries + 1
            RETURNING state, tries, procore_id, result, (xmax = 0) AS inserted
            """,
            request_id,
            entry_id,
            account_id,
            operation,
        )
        assert row is not None
        if row["inserted"]:
            return Attempt("new", 0, None, None)
        return Attempt(row["state"], row["tries"] - 1, row["procore_id"], row["result"])

    async def finish(self, request_id: uuid.UUID, procore_id: int | None, result: dict[str, Any]) -> None:
        await self._pool.execute(
            "UPDATE attempts SET state = 'done', procore_id = $2, result = $3::text::jsonb, finished_at = now()"
            " WHERE request_id = $1",
            request_id,
            procore_id,
            json.dumps(result),
        )
