"""Setups (`setups`) and the account lock every writer of an account takes first. Takes a database
connection (`db`); the caller owns the transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from shared.events import Module


async def lock_account(db: asyncpg.Connection, account_id: str) -> None:
    """Serialize the account's writes (until the transaction ends), across every instance of the service.

    Every transaction that changes an account's setup, connection or mappings takes it first, so two
    instances never decide from the same stale state (a sync's diff, a one-to-one check, the two-way
    switch) and the account's outbox rows are written in commit order. A lock on the account's identity,
    not on a row: the account may have no row yet.
    """
    await db.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':account'), hashtext($1))", account_id)


@dataclass(frozen=True)
class StoredSetup:
    procore_company_id: int | None
    enabled_modules: list[Module]
    two_way: bool
    auto_publish: dict[Module, int] = field(default_factory=dict)


async def save_setup(
    db: asyncpg.Connection,
    account_id: str,
    company_id: int | None,
    modules: Sequence[Module],
    two_way: bool,
    updated_by: str | None,
    auto_publish: Mapping[Module, int] | None = None,
) -> None:
    """`auto_publish` None keeps what is stored."""
    await db.execute(
        """
        INSERT INTO setups (account_id, procore_company_id, enabled_modules, two_way, updated_by, auto_publish)
        VALUES ($1, $2, $3, $4, $5, coalesce($6::text::jsonb, '{}'))
        ON CONFLICT (account_id) DO UPDATE SET procore_company_id = EXCLUDED.procore_company_id,
            enabled_modules = EXCLUDED.enabled_modules, two_way = EXCLUDED.two_way,
            updated_by = EXCLUDED.updated_by, updated_at = now(),
            auto_publish = coalesce($6::text::jsonb, setups.auto_publish)
        """,
        account_id,
        company_id,
        sorted(m.value for m in modules),
        two_way,
        updated_by,
        None if auto_publish is None else json.dumps({m.value: n for m, n in sorted(auto_publish.items())}),
    )


async def read_setup(db: asyncpg.Connection, account_id: str) -> StoredSetup | None:
    r = await db.fetchrow(
        "SELECT procore_company_id, enabled_modules, two_way, auto_publish::text AS auto_publish FROM setups"
        " WHERE account_id = $1",
        account_id,
    )
    if r is None:
        return None
    auto = {Module(m): int(n) for m, n in json.loads(r["auto_publish"]).items()}
    return StoredSetup(r["procore_company_id"], [Module(m) for m in r["enabled_modules"]], r["two_way"], auto)


async def is_two_way(db: asyncpg.Connection, account_id: str) -> bool:
    return bool(await db.fetchval("SELECT two_way FROM setups WHERE account_id = $1", account_id))
