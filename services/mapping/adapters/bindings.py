"""The `company_bindings` table (Procore company → the account that proved it) and `oauth_attempts` (OAuth
authorization requests in flight). Takes a connection; the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from services.mapping.proof import Attempt, Proof, ReachedCompany

# --- bindings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    procore_company_id: int
    name: str
    is_active: bool
    proof: Proof


async def holders(db: asyncpg.Connection, company_ids: Sequence[int]) -> dict[int, str]:
    """The account each of these companies is bound to (locked until the transaction ends)."""
    rows = await db.fetch(
        "SELECT procore_company_id, account_id FROM company_bindings WHERE procore_company_id = ANY($1::bigint[])"
        " FOR UPDATE",
        list(company_ids),
    )
    return {r["procore_company_id"]: r["account_id"] for r in rows}


async def holder_of(db: asyncpg.Connection, company_id: int) -> str | None:
    holder: str | None = await db.fetchval(
        "SELECT account_id FROM company_bindings WHERE procore_company_id = $1", company_id
    )
    return holder


async def bind(
    db: asyncpg.Connection,
    account_id: str,
    companies: Sequence[ReachedCompany],
    proof: Proof,
    connect_command: UUID,
    bound_by: str,
) -> list[int]:
    """Bind companies nobody holds; returns those bound now. A company another account bound meanwhile stays
    theirs (the primary key decides: ON CONFLICT DO NOTHING)."""
    rows = await db.fetch(
        """
        INSERT INTO company_bindings (procore_company_id, account_id, name, is_active, proof, connect_command, bound_by)
        SELECT c.id, $1, c.name, c.active, $3, $4, $5
          FROM jsonb_to_recordset($2::jsonb) AS c(id bigint, name text, active boolean)
        ON CONFLICT (procore_company_id) DO NOTHING
        RETURNING procore_company_id
        """,
        account_id,
        [{"id": c.procore_company_id, "name": c.name, "active": c.is_active} for c in companies],
        proof.value,
        connect_command,
        bound_by,
    )
    return [r["procore_company_id"] for r in rows]


async def rename(db: asyncpg.Connection, account_id: str, companies: Sequence[ReachedCompany]) -> None:
    """The account's own companies as Procore names them now."""
    await db.execute(
        """
        UPDATE company_bindings b SET name = c.name, is_active = c.active
          FROM jsonb_to_recordset($2::jsonb) AS c(id bigint, name text, active boolean)
         WHERE b.procore_company_id = c.id AND b.account_id = $1 AND (b.name, b.is_active) <> (c.name, c.active)
        """,
        account_id,
        [{"id": c.procore_company_id, "name": c.name, "active": c.is_active} for c in companies],
    )


async def of_account(db: asyncpg.Connection, account_id: str) -> list[Binding]:
    rows = await db.fetch(
        "SELECT procore_company_id, name, is_active, proof FROM company_bindings WHERE account_id = $1"
        " ORDER BY name, procore_company_id",
        account_id,
    )
    return [Binding(r["procore_company_id"], r["name"], r["is_active"], Proof(r["proof"])) for r in rows]


async def unbind(db: asyncpg.Connection, account_id: str, company_id: int) -> Binding | None:
    """Release the company if it is the account's; returns what was released."""
    r = await db.fetchrow(
        "DELETE FROM company_bindings WHERE procore_company_id = $1 AND account_id = $2"
        " RETURNING procore_company_id, name, is_active, proof",
        company_id,
        account_id,
    )
    return Binding(r["procore_company_id"], r["name"], r["is_active"], Proof(r["proof"])) if r is not None else None


# --- OAuth attempts -------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredAttempt:
    attempt: Attempt
    account_id: str
    requested_by: str
    permissions: list[str]
    redirect_uri: str
    code_verifier: str | None
    """Encrypted."""


async def save_attempt(
    db: asyncpg.Connection,
    state_hash: bytes,
    browser_hash: bytes,
    account_id: str,
    requested_by: str,
    permissions: Sequence[str],
    redirect_uri: str,
    code_verifier: str | None,
    ttl_s: float,
) -> None:
    # Used and expired attempts are kept a day (a replay is then told "already used", not "unknown").
    await db.execute("DELETE FROM oauth_attempts WHERE expires_at < now() - interval '1 day'")
    await db.execute(
        """
        INSERT INTO oauth_attempts (state_hash, browser_hash, account_id, requested_by, permissions, redirect_uri,
                                    code_verifier, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))
        """,
        state_hash,
        browser_hash,
        account_id,
        requested_by,
        list(permissions),
        redirect_uri,
        code_verifier,
        ttl_s,
    )


async def use_attempt(db: asyncpg.Connection, state_hash: bytes) -> tuple[StoredAttempt, datetime] | None:
    """Mark the attempt used (whatever comes next: a state works once) and return it with the database's now."""
    r = await db.fetchrow(
        """
        WITH before AS (SELECT used_at FROM oauth_attempts WHERE state_hash = $1 FOR UPDATE)
        UPDATE oauth_attempts a SET used_at = coalesce(a.used_at, now())
          FROM before
         WHERE a.state_hash = $1
        RETURNING a.browser_hash, a.expires_at, before.used_at AS used_before, a.account_id, a.requested_by,
                  a.permissions, a.redirect_uri, a.code_verifier, now() AS now
        """,
        state_hash,
    )
    if r is None:
        return None
    attempt = Attempt(bytes(r["browser_hash"]), r["expires_at"], r["used_before"])
    stored = StoredAttempt(
        attempt, r["account_id"], r["requested_by"], list(r["permissions"]), r["redirect_uri"], r["code_verifier"]
    )
    return stored, r["now"]
