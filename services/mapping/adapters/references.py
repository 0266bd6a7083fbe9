"""MobiClocks reference entities (`reference_entities`). Takes a database connection (`db`); the caller owns the
transaction."""

from __future__ import annotations

import asyncpg

from services.mapping.domain import MobiClocksRow
from shared.events import ReferenceDeleted, ReferenceKind, ReferenceUpserted


async def save_reference(db: asyncpg.Connection, event: ReferenceUpserted | ReferenceDeleted) -> None:
    if isinstance(event, ReferenceDeleted):
        await db.execute(
            "UPDATE reference_entities SET deleted = true, updated_at = now()"
            " WHERE account_id = $1 AND kind = $2 AND entity_id = $3",
            event.account_id,
            event.kind.value,
            event.entity_id,
        )
        return
    await db.execute(
        """
        INSERT INTO reference_entities (account_id, kind, entity_id, name, number, linked_procore_id)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (account_id, kind, entity_id) DO UPDATE SET name = EXCLUDED.name, number = EXCLUDED.number,
            linked_procore_id = EXCLUDED.linked_procore_id, deleted = false, updated_at = now()
        """,
        event.account_id,
        event.kind.value,
        event.entity_id,
        event.name,
        event.number,
        event.linked_procore_id,
    )


async def reference_rows(db: asyncpg.Connection, account_id: str, kind: ReferenceKind) -> list[MobiClocksRow]:
    rows = await db.fetch(
        "SELECT entity_id, name, number FROM reference_entities"
        " WHERE account_id = $1 AND kind = $2 AND NOT deleted ORDER BY entity_id",
        account_id,
        kind.value,
    )
    return [MobiClocksRow(r["entity_id"], r["name"], r["number"]) for r in rows]


async def linked_references(db: asyncpg.Connection, account_id: str) -> list[tuple[ReferenceKind, str, int, str]]:
    """(kind, entity id, linked Procore id, name) of every live reference entity with a link (two-way)."""
    rows = await db.fetch(
        "SELECT kind, entity_id, linked_procore_id, name FROM reference_entities"
        " WHERE account_id = $1 AND NOT deleted AND linked_procore_id IS NOT NULL",
        account_id,
    )
    return [(ReferenceKind(r["kind"]), r["entity_id"], r["linked_procore_id"], r["name"]) for r in rows]


async def reference_name(db: asyncpg.Connection, account_id: str, kind: ReferenceKind, entity_id: str) -> str | None:
    """A MobiClocks entity's name, for messages people read (never its id when the name is known)."""
    name: str | None = await db.fetchval(
        "SELECT name FROM reference_entities WHERE account_id = $1 AND kind = $2 AND entity_id = $3",
        account_id,
        kind.value,
        entity_id,
    )
    return name
