"""Each entry's publish history (table `publish_history`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import NamedTuple

import asyncpg


class HistoryRow(NamedTuple):
    """One step of an entry's publish history (a tuple, written as it is)."""

    entry_id: uuid.UUID
    request_id: uuid.UUID | None
    action: str
    requested_by: str | None
    outcome: str | None
    message: str | None


async def add_history(conn: asyncpg.Connection, rows: Sequence[HistoryRow]) -> None:
    if rows:
        await conn.executemany(
            "INSERT INTO publish_history (entry_id, request_id, action, requested_by, outcome, message)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            rows,
        )
