"""Every secret the mapping service stores encrypted, by table: read in key order and rewritten, for rotate-keys.

Each batch is read `FOR UPDATE` and rewritten in the same transaction: a refresh that runs meanwhile (it locks its
connection row too) waits for the batch or goes first, and is never overwritten with the pair it replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class SecretColumns:
    table: str
    key: str
    """The primary key: batches follow it."""
    key_type: str
    account: str
    """The account each row's secrets are bound to."""
    columns: tuple[str, ...]


TABLES = (
    SecretColumns(
        "connections", "account_id", "text", "account_id", ("access_token", "refresh_token", "client_secret")
    ),
    SecretColumns("oauth_attempts", "state_hash", "bytea", "account_id", ("code_verifier",)),
)


@dataclass(frozen=True)
class StoredRow:
    key: Any
    account_id: str
    secrets: dict[str, str]
    """Column → ciphertext (columns without a value left out)."""


def _any_secret(spec: SecretColumns) -> str:
    return " OR ".join(f"{column} IS NOT NULL" for column in spec.columns)


async def count(db: asyncpg.Connection, spec: SecretColumns) -> int:
    value: int = await db.fetchval(f"SELECT count(*) FROM {spec.table} WHERE {_any_secret(spec)}")
    return value


async def lock_batch(db: asyncpg.Connection, spec: SecretColumns, after: Any, limit: int) -> list[StoredRow]:
    """The next rows with a secret after key `after` (None: from the start), locked until the transaction ends."""
    columns = ", ".join(spec.columns)
    rows = await db.fetch(
        f"""
        SELECT {spec.key} AS key, {spec.account} AS account_id, {columns} FROM {spec.table}
         WHERE ({_any_secret(spec)}) AND ($1::{spec.key_type} IS NULL OR {spec.key} > $1)
         ORDER BY {spec.key} LIMIT $2 FOR UPDATE
        """,
        after,
        limit,
    )
    return [StoredRow(r["key"], r["account_id"], {c: r[c] for c in spec.columns if r[c] is not None}) for r in rows]


async def rewrite(db: asyncpg.Connection, spec: SecretColumns, key: Any, secrets: dict[str, str]) -> None:
    """Replace some ciphertexts of one locked row."""
    names = list(secrets)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    await db.execute(f"UPDATE {spec.table} SET {assignments} WHERE {spec.key} = $1", key, *secrets.values())
