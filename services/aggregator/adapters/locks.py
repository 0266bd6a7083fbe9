"""Advisory locks of the aggregator: the account locks a timelog batch (shared) and a from-scratch recompute
(exclusive) take, the remap round's session lock, and what pg_locks says about running batches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

# --- account locks ---------------------------------------------------------------------

ACCOUNT_LOCKS = 32
"""A timelog batch from up to this many accounts takes one shared lock per account."""
ACCOUNT_BUCKETS = 64
"""A batch from more accounts takes shared locks on buckets of accounts instead: no batch holds more than
this many advisory locks (PostgreSQL's shared lock table holds max_locks_per_transaction times max_connections
for everyone, and a batch of 2,000 events can come from 2,000 accounts)."""
# Advisory locks are database-wide: their first key names the schema, so aggregators of other schemas on the same
# database (tests, benchmarks, other environments) never wait on these.
_ACCOUNT_SPACE = "hashtext(current_schema() || ':aggregate')"
"""The first key of the two-key advisory locks on accounts (the second: the account's hash)."""
_BUCKETS_SPACE = "hashtext(current_schema() || ':aggregate-buckets')"
"""The first key of the two-key advisory locks on account buckets."""


async def lock_accounts_shared(conn: asyncpg.Connection, accounts: Sequence[str]) -> None:
    """What a timelog batch holds so that no from-scratch recompute of these accounts runs at the same time."""
    if len(accounts) <= ACCOUNT_LOCKS:
        await conn.execute(
            f"SELECT pg_advisory_xact_lock_shared({_ACCOUNT_SPACE}, hashtext(a)) FROM unnest($1::text[]) a ORDER BY a",
            list(accounts),
        )
        return
    await conn.execute(
        f"""
        SELECT pg_advisory_xact_lock_shared({_BUCKETS_SPACE}, b)
          FROM (SELECT DISTINCT hashtext(a) & $2 AS b FROM unnest($1::text[]) a) buckets
         ORDER BY b
        """,
        list(accounts),
        ACCOUNT_BUCKETS - 1,
    )


async def lock_account(conn: asyncpg.Connection, account_id: str) -> None:
    """The exclusive lock of a from-scratch recompute of an account: on the account and on its bucket, so it
    excludes batches of few accounts and batches of many alike (always in this order)."""
    await conn.execute(f"SELECT pg_advisory_xact_lock({_ACCOUNT_SPACE}, hashtext($1::text))", account_id)
    await conn.execute(
        f"SELECT pg_advisory_xact_lock({_BUCKETS_SPACE}, hashtext($1::text) & $2)", account_id, ACCOUNT_BUCKETS - 1
    )


_REMAP_SPACE = "hashtext(current_schema() || ':remap')"


async def try_lock_remap(conn: asyncpg.Connection, account_id: str) -> bool:
    """A session lock: one remap round of an account at a time over every instance (released when the session
    ends, so a crashed instance's round is taken over)."""
    return bool(await conn.fetchval(f"SELECT pg_try_advisory_lock({_REMAP_SPACE}, hashtext($1::text))", account_id))


async def unlock_remap(conn: asyncpg.Connection, account_id: str) -> None:
    await conn.execute(f"SELECT pg_advisory_unlock({_REMAP_SPACE}, hashtext($1::text))", account_id)


def _as_oid(key: str) -> str:
    """How pg_locks shows an int4 advisory key (as an oid: its unsigned 32 bits)."""
    return f"((({key})::bigint + 4294967296) % 4294967296)::oid"


_BATCHES_OF_ACCOUNT = f"""
SELECT DISTINCT l.virtualtransaction FROM pg_locks l
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.mode = 'ShareLock'
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND ((l.classid = {_as_oid(_ACCOUNT_SPACE)} AND l.objid = {_as_oid("hashtext($1::text)")})
     OR (l.classid = {_as_oid(_BUCKETS_SPACE)} AND l.objid = {_as_oid("hashtext($1::text) & $2")}))
"""


async def batches_of_account(conn: asyncpg.Connection, account_id: str) -> list[str]:
    """The transactions (virtual ids) of the timelog batches now writing this account (the shared account or
    bucket locks they hold): seen without taking a lock, so waiting for them blocks no one."""
    rows = await conn.fetch(_BATCHES_OF_ACCOUNT, account_id, ACCOUNT_BUCKETS - 1)
    return [r["virtualtransaction"] for r in rows]


async def still_running(conn: asyncpg.Connection, transactions: Sequence[str]) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE virtualtransaction = ANY($1::text[]))", list(transactions)
        )
    )


async def database_now(conn: asyncpg.Connection) -> datetime:
    """The database's clock (what `now()` says in this session)."""
    found: datetime = await conn.fetchval("SELECT now()")
    return found
