"""Command outcomes (`command_outcomes`) and auto-map reports (`automap_reports`). Takes a database connection
(`db`); the caller owns the transaction."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from shared.events import ProcoreEntity


async def save_automap_report(
    db: asyncpg.Connection,
    account_id: str,
    entity: ProcoreEntity,
    requested_by: str | None,
    overwrite_manual: bool,
    counts: tuple[int, int, int],
    details: list[dict[str, Any]],
) -> None:
    await db.execute(
        """
        INSERT INTO automap_reports (account_id, entity, requested_by, overwrite_manual, mapped, skipped, ambiguous,
                                     details)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (account_id, entity) DO UPDATE SET ran_at = now(), requested_by = EXCLUDED.requested_by,
            overwrite_manual = EXCLUDED.overwrite_manual, mapped = EXCLUDED.mapped, skipped = EXCLUDED.skipped,
            ambiguous = EXCLUDED.ambiguous, details = EXCLUDED.details
        """,
        account_id,
        entity.value,
        requested_by,
        overwrite_manual,
        *counts,
        details,
    )


async def is_finished(db: asyncpg.Connection, command_id: UUID) -> bool:
    """The command has an outcome (its changes, if any, were written to the outbox with it)."""
    return bool(await db.fetchval("SELECT true FROM command_outcomes WHERE command_id = $1", command_id))


async def record_outcome(
    db: asyncpg.Connection,
    command_id: UUID,
    account_id: str,
    command_type: str,
    status: str,
    message: str | None,
    details: dict[str, Any] | None,
    requested_by: str | None,
    changes: list[dict[str, Any]] | None = None,
) -> bool:
    """Record the outcome once; False when the command already has one (it was handled meanwhile)."""
    status_tag = await db.execute(
        """
        INSERT INTO command_outcomes (command_id, account_id, command_type, status, message, details, requested_by,
                                      changes)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (command_id) DO NOTHING
        """,
        command_id,
        account_id,
        command_type,
        status,
        message,
        details,
        requested_by,
        changes or [],
    )
    return bool(status_tag.endswith(" 1"))
