"""The `connections` table: each account's Procore tokens, encrypted at rest, and the companies they reach."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from cryptography.fernet import Fernet, InvalidToken

from shared.events import ConnectionStatus
from shared.procore import OAuthTokens


class TokenCipher:
    """Fernet (AES-128-CBC + HMAC-SHA256) with the key from TOKEN_ENCRYPTION_KEY; tokens never rest in clear."""

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError) as error:
            raise ValueError("TOKEN_ENCRYPTION_KEY must be a Fernet key (32 url-safe base64-encoded bytes)") from error

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str) -> str:
        try:
            return self._fernet.decrypt(value.encode()).decode()
        except InvalidToken as error:
            raise ValueError(
                "a stored token cannot be decrypted with TOKEN_ENCRYPTION_KEY (was the key changed?)"
            ) from error


@dataclass(frozen=True)
class StoredConnection:
    account_id: str
    grant_type: str
    status: ConnectionStatus
    access_token: str | None
    """Decrypted."""
    refresh_token: str | None
    """Decrypted."""
    expires_at: datetime | None
    message: str | None
    connect_command: UUID | None = None
    """The connect command that stored these tokens (a redelivered one resumes from them)."""


_COLUMNS = "grant_type, status, access_token, refresh_token, expires_at, message, connect_command"


def _stored(cipher: TokenCipher, account_id: str, r: asyncpg.Record | None) -> StoredConnection | None:
    if r is None:
        return None
    return StoredConnection(
        account_id=account_id,
        grant_type=r["grant_type"],
        status=ConnectionStatus(r["status"]),
        access_token=cipher.decrypt(r["access_token"]) if r["access_token"] else None,
        refresh_token=cipher.decrypt(r["refresh_token"]) if r["refresh_token"] else None,
        expires_at=r["expires_at"],
        message=r["message"],
        connect_command=r["connect_command"],
    )


async def read(conn: asyncpg.Connection, cipher: TokenCipher, account_id: str) -> StoredConnection | None:
    """The connection as last committed, without a lock (enough to hand out a token that is still fresh)."""
    r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM connections WHERE account_id = $1", account_id)
    return _stored(cipher, account_id, r)


async def lock(conn: asyncpg.Connection, cipher: TokenCipher, account_id: str) -> StoredConnection | None:
    """The connection row, locked until the transaction ends: one refresh at a time per account."""
    r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM connections WHERE account_id = $1 FOR UPDATE", account_id)
    return _stored(cipher, account_id, r)


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


async def save_new(
    conn: asyncpg.Connection,
    cipher: TokenCipher,
    account_id: str,
    grant_type: str,
    tokens: OAuthTokens,
    connected_by: str,
    connect_command: UUID,
) -> None:
    await conn.execute(
        """
        INSERT INTO connections (account_id, grant_type, status, access_token, refresh_token, expires_at, message,
                                 connected_by, connected_at, refreshed_at, refresh_count, connect_command)
        VALUES ($1, $2, 'connected', $3, $4, $5, NULL, $6, now(), NULL, 0, $7)
        ON CONFLICT (account_id) DO UPDATE SET grant_type = EXCLUDED.grant_type, status = 'connected',
            access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,
            expires_at = EXCLUDED.expires_at, message = NULL, connected_by = EXCLUDED.connected_by,
            connected_at = now(), refreshed_at = NULL, refresh_count = 0, connect_command = EXCLUDED.connect_command,
            updated_at = now()
        """,
        account_id,
        grant_type,
        cipher.encrypt(tokens.access_token),
        cipher.encrypt(tokens.refresh_token) if tokens.refresh_token else None,
        _at(tokens.expires_at),
        connected_by,
        connect_command,
    )


async def save_refreshed(conn: asyncpg.Connection, cipher: TokenCipher, account_id: str, tokens: OAuthTokens) -> None:
    """Store a rotated pair (a refresh without a new refresh token keeps the old one: client credentials)."""
    await conn.execute(
        """
        UPDATE connections SET access_token = $2, refresh_token = coalesce($3, refresh_token), expires_at = $4,
            refreshed_at = now(), refresh_count = refresh_count + 1, updated_at = now()
         WHERE account_id = $1
        """,
        account_id,
        cipher.encrypt(tokens.access_token),
        cipher.encrypt(tokens.refresh_token) if tokens.refresh_token else None,
        _at(tokens.expires_at),
    )


async def set_status(conn: asyncpg.Connection, account_id: str, status: ConnectionStatus, message: str | None) -> None:
    """Needs reauthorization or disconnected: the tokens are useless, so they are wiped."""
    await conn.execute(
        """
        UPDATE connections SET status = $2, message = $3, access_token = NULL, refresh_token = NULL,
            expires_at = NULL, updated_at = now()
         WHERE account_id = $1
        """,
        account_id,
        status.value,
        message,
    )


async def save_companies(conn: asyncpg.Connection, account_id: str, companies: Sequence[tuple[int, str, bool]]) -> None:
    await conn.execute("DELETE FROM procore_companies WHERE account_id = $1", account_id)
    await conn.executemany(
        "INSERT INTO procore_companies (account_id, procore_company_id, name, is_active) VALUES ($1, $2, $3, $4)",
        [(account_id, cid, name, active) for cid, name, active in companies],
    )


async def company_ids(conn: asyncpg.Connection, account_id: str) -> list[int]:
    rows = await conn.fetch(
        "SELECT procore_company_id FROM procore_companies WHERE account_id = $1 ORDER BY 1", account_id
    )
    return [r["procore_company_id"] for r in rows]


async def status_of(conn: asyncpg.Connection, account_id: str) -> ConnectionStatus | None:
    value = await conn.fetchval("SELECT status FROM connections WHERE account_id = $1", account_id)
    return ConnectionStatus(value) if value is not None else None
