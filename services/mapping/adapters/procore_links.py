"""The `connections` table: each account's Procore tokens (and a customer's service-account secret), encrypted at
rest."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.events import ConnectionStatus
from shared.procore import OAuthTokens

BOUND = "v2."
"""Prefix of a ciphertext bound to its account ('.' is not in Fernet's alphabet: a legacy token never has it)."""


class UndecryptableSecret(ValueError):
    """A stored secret that none of the keys opens, or that belongs to another account: it cannot be used."""


def fernet_key(key: str) -> Fernet:
    try:
        return Fernet(key.strip().encode())
    except (ValueError, TypeError) as error:
        raise ValueError("must be Fernet keys (32 url-safe base64-encoded bytes each)") from error


class TokenCipher:
    """Fernet (AES-128-CBC + HMAC-SHA256) under several keys: the first encrypts, every key decrypts, so keys rotate
    without downtime (`python -m services.mapping rotate-keys` then re-encrypts under the first).

    Each ciphertext is bound to its account: the account id is sealed with the secret, and a secret opened for
    another account is refused, so a ciphertext copied into another account's row is useless there. Ciphertexts
    written before binding existed (no `v2.` prefix) still open, unbound, until rotate-keys rewrites them.
    """

    def __init__(self, keys: str | Sequence[str]) -> None:
        listed = [keys] if isinstance(keys, str) else list(keys)
        if not listed:
            raise ValueError("at least one key is required")
        self._primary = fernet_key(listed[0])
        self._all = MultiFernet([self._primary, *(fernet_key(k) for k in listed[1:])])

    def encrypt(self, value: str, account_id: str) -> str:
        sealed = json.dumps({"account": account_id, "value": value}, separators=(",", ":")).encode()
        return BOUND + self._primary.encrypt(sealed).decode()

    def decrypt(self, value: str, account_id: str) -> str:
        return self._open(self._all, value, account_id)

    def rotate(self, value: str, account_id: str) -> str | None:
        """The value re-encrypted under the first key and bound to `account_id`; None if it already is."""
        if value.startswith(BOUND):
            try:
                self._open(self._primary, value, account_id)
                return None
            except UndecryptableSecret:
                pass  # another key, or another account (then decrypt refuses it below)
        return self.encrypt(self.decrypt(value, account_id), account_id)

    @staticmethod
    def _open(fernet: Fernet | MultiFernet, value: str, account_id: str) -> str:
        bound = value.startswith(BOUND)
        try:
            plain = fernet.decrypt(value.removeprefix(BOUND).encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret(
                "a stored secret cannot be decrypted with TOKEN_ENCRYPTION_KEYS (was a key removed before "
                "rotate-keys re-encrypted everything under the first?)"
            ) from None
        if not bound:
            return plain  # written before secrets were bound to their account: rotate-keys binds it
        sealed = json.loads(plain)
        if sealed.get("account") != account_id:
            raise UndecryptableSecret(f"a stored secret of account {account_id} was sealed for another account")
        value_out: str = sealed["value"]
        return value_out


@dataclass(frozen=True)
class StoredProcoreLink:
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
    """The connection attempt that stored these tokens (its CompleteProcoreConnection finishes it)."""
    client_id: str | None = None
    """client_credentials: the customer's own service account (never the app's shared client)."""
    client_secret: str | None = None
    """Decrypted."""
    service_account_company_id: int | None = None
    """client_credentials: the company the customer named for their service account (sent in Procore-Company-Id
    on the proof's `/companies` call, as Procore's documentation asks for service accounts)."""


_COLUMNS = (
    "grant_type, status, access_token, refresh_token, expires_at, message, connect_command, client_id, client_secret,"
    " service_account_company_id"
)


def _stored(cipher: TokenCipher, account_id: str, r: asyncpg.Record | None) -> StoredProcoreLink | None:
    if r is None:
        return None
    return StoredProcoreLink(
        account_id=account_id,
        grant_type=r["grant_type"],
        status=ConnectionStatus(r["status"]),
        access_token=cipher.decrypt(r["access_token"], account_id) if r["access_token"] else None,
        refresh_token=cipher.decrypt(r["refresh_token"], account_id) if r["refresh_token"] else None,
        expires_at=r["expires_at"],
        message=r["message"],
        connect_command=r["connect_command"],
        client_id=r["client_id"],
        client_secret=cipher.decrypt(r["client_secret"], account_id) if r["client_secret"] else None,
        service_account_company_id=r["service_account_company_id"],
    )


async def read(db: asyncpg.Connection, cipher: TokenCipher, account_id: str) -> StoredProcoreLink | None:
    """The connection as last committed, without a lock (enough to hand out a token that is still fresh)."""
    r = await db.fetchrow(f"SELECT {_COLUMNS} FROM connections WHERE account_id = $1", account_id)
    return _stored(cipher, account_id, r)


async def lock(db: asyncpg.Connection, cipher: TokenCipher, account_id: str) -> StoredProcoreLink | None:
    """The connection row, locked until the transaction ends: one refresh at a time per account."""
    r = await db.fetchrow(f"SELECT {_COLUMNS} FROM connections WHERE account_id = $1 FOR UPDATE", account_id)
    return _stored(cipher, account_id, r)


def _at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


async def save_new(
    db: asyncpg.Connection,
    cipher: TokenCipher,
    account_id: str,
    grant_type: str,
    tokens: OAuthTokens,
    connected_by: str,
    connect_command: UUID,
    client: tuple[str, str] | None = None,
    client_company: int | None = None,
) -> None:
    """A new connection replaces the account's previous one (`client`: a customer's service account id and secret;
    `client_company`: the company its owner named)."""
    await db.execute(
        """
        INSERT INTO connections (account_id, grant_type, status, access_token, refresh_token, expires_at, message,
                                 connected_by, connected_at, refreshed_at, refresh_count, connect_command, client_id,
                                 client_secret, service_account_company_id)
        VALUES ($1, $2, 'connected', $3, $4, $5, NULL, $6, now(), NULL, 0, $7, $8, $9, $10)
        ON CONFLICT (account_id) DO UPDATE SET grant_type = EXCLUDED.grant_type, status = 'connected',
            access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,
            expires_at = EXCLUDED.expires_at, message = NULL, connected_by = EXCLUDED.connected_by,
            connected_at = now(), refreshed_at = NULL, refresh_count = 0, connect_command = EXCLUDED.connect_command,
            client_id = EXCLUDED.client_id, client_secret = EXCLUDED.client_secret, refresh_answer_lost_at = NULL,
            service_account_company_id = EXCLUDED.service_account_company_id, updated_at = now()
        """,
        account_id,
        grant_type,
        cipher.encrypt(tokens.access_token, account_id),
        cipher.encrypt(tokens.refresh_token, account_id) if tokens.refresh_token else None,
        _at(tokens.expires_at),
        connected_by,
        connect_command,
        client[0] if client else None,
        cipher.encrypt(client[1], account_id) if client else None,
        client_company,
    )


async def save_refreshed(db: asyncpg.Connection, cipher: TokenCipher, account_id: str, tokens: OAuthTokens) -> None:
    """Store a rotated pair (a refresh without a new refresh token keeps the old one: client credentials)."""
    await db.execute(
        """
        UPDATE connections SET access_token = $2, refresh_token = coalesce($3, refresh_token), expires_at = $4,
            refreshed_at = now(), refresh_count = refresh_count + 1, refresh_answer_lost_at = NULL, updated_at = now()
         WHERE account_id = $1
        """,
        account_id,
        cipher.encrypt(tokens.access_token, account_id),
        cipher.encrypt(tokens.refresh_token, account_id) if tokens.refresh_token else None,
        _at(tokens.expires_at),
    )


async def set_status(db: asyncpg.Connection, account_id: str, status: ConnectionStatus, message: str | None) -> None:
    """Needs reauthorization or disconnected: the tokens (and a service account's secret) are useless, so wiped."""
    await db.execute(
        """
        UPDATE connections SET status = $2, message = $3, access_token = NULL, refresh_token = NULL,
            expires_at = NULL, client_secret = NULL, updated_at = now()
         WHERE account_id = $1
        """,
        account_id,
        status.value,
        message,
    )


async def mark_refresh_answer_lost(db: asyncpg.Connection, account_id: str) -> None:
    await db.execute(
        "UPDATE connections SET refresh_answer_lost_at = now(), updated_at = now() WHERE account_id = $1", account_id
    )


async def refresh_answer_lost(db: asyncpg.Connection, account_id: str) -> bool:
    """Whether the last refresh's answer was lost (the stored refresh token may be burnt)."""
    lost = await db.fetchval("SELECT refresh_answer_lost_at FROM connections WHERE account_id = $1", account_id)
    return lost is not None


async def count_needing_reauthorization(db: asyncpg.Connection) -> dict[str, int]:
    """Connections Procore refused to renew, by grant type (for the gauge and its alert)."""
    rows = await db.fetch(
        "SELECT grant_type, count(*) AS n FROM connections WHERE status = 'needs_reauthorization' GROUP BY grant_type"
    )
    return {r["grant_type"]: int(r["n"]) for r in rows}


async def status_of(db: asyncpg.Connection, account_id: str) -> ConnectionStatus | None:
    value = await db.fetchval("SELECT status FROM connections WHERE account_id = $1", account_id)
    return ConnectionStatus(value) if value is not None else None
