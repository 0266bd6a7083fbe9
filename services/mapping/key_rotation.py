"""`python -m services.mapping rotate-keys`: every stored secret re-encrypted under the first key, bound to its account.

Run it after putting a new key first in TOKEN_ENCRYPTION_KEYS (the old key still listed after it, so everything
stays readable meanwhile); once it reports nothing left under other keys, the old key can be dropped. Idempotent:
a second run rewrites nothing. Safe while the service runs: see `adapters.stored_secrets`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from services.mapping.adapters import stored_secrets as stored
from services.mapping.adapters.procore_links import TokenCipher, UndecryptableSecret


@dataclass
class RotationReport:
    rows: int = 0
    """Rows with at least one secret, looked at."""
    rewritten: int = 0
    """Secrets re-encrypted (under an older key, or not yet bound to their account)."""
    current: int = 0
    """Secrets already under the first key and bound."""
    unreadable: list[str] = field(default_factory=list)
    """Secrets no key opens, or sealed for another account: left as they are (those connections must reconnect)."""


async def count_rows(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as db:
        return sum([await stored.count(db, spec) for spec in stored.TABLES])


async def rotate(
    pool: asyncpg.Pool, cipher: TokenCipher, batch_size: int = 200, advance: Callable[[int], None] = lambda _: None
) -> RotationReport:
    """Re-encrypt, one locked batch per transaction, every secret that is not current; `advance(rows)` per batch."""
    report = RotationReport()
    for spec in stored.TABLES:
        after = None
        while True:
            async with pool.acquire() as db, db.transaction():
                rows = await stored.lock_batch(db, spec, after, batch_size)
                for row in rows:
                    changed = _rotate_row(cipher, spec, row, report)
                    if changed:
                        await stored.rewrite(db, spec, row.key, changed)
            if not rows:
                break
            after = rows[-1].key
            report.rows += len(rows)
            advance(len(rows))
    return report


def _rotate_row(
    cipher: TokenCipher, spec: stored.SecretColumns, row: stored.StoredRow, report: RotationReport
) -> dict[str, str]:
    changed = {}
    for column, value in row.secrets.items():
        try:
            rotated = cipher.rotate(value, row.account_id)
        except UndecryptableSecret as error:
            report.unreadable.append(f"{spec.table}.{column} of account {row.account_id}: {error}")
            continue
        if rotated is None:
            report.current += 1
        else:
            changed[column] = rotated
            report.rewritten += 1
    return changed
