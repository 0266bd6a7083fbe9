"""SQL of the webhook hooks (one per chosen company) and of the deliveries already taken (dedupe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg


@dataclass(frozen=True)
class HookDue:
    """A company Setup chose, connected, whose hook is missing or points elsewhere."""

    account_id: str
    procore_company_id: int
    procore_hook_id: int | None
    """The hook registered before (to replace), if any."""


@dataclass(frozen=True)
class StoredHook:
    account_id: str
    procore_company_id: int
    procore_hook_id: int
    reconciled_until: datetime | None
    enabled_modules: list[str]


_KEEPER_LOCK = "hashtextextended(current_schema() || '.webhook_keeper', 0)"


async def try_keeper_lock(db: asyncpg.Connection) -> bool:
    """The webhook keeper's session lock (per schema: several systems may share one database)."""
    return bool(await db.fetchval(f"SELECT pg_try_advisory_lock({_KEEPER_LOCK})"))


async def keeper_unlock(db: asyncpg.Connection) -> None:
    await db.execute(f"SELECT pg_advisory_unlock({_KEEPER_LOCK})")


async def hooks_due(db: asyncpg.Connection, destination_url: str) -> list[HookDue]:
    """Chosen companies of connected accounts without a hook delivering to `destination_url`."""
    rows = await db.fetch(
        """
        SELECT s.account_id, s.procore_company_id, h.procore_hook_id
          FROM setups s
          JOIN connections c ON c.account_id = s.account_id AND c.status = 'connected'
          LEFT JOIN webhook_hooks h ON h.procore_company_id = s.procore_company_id
         WHERE s.procore_company_id IS NOT NULL
           AND (h.procore_company_id IS NULL OR h.account_id <> s.account_id OR h.destination_url <> $1)
         ORDER BY s.account_id
        """,
        destination_url,
    )
    return [HookDue(r["account_id"], r["procore_company_id"], r["procore_hook_id"]) for r in rows]


async def hooks_orphaned(db: asyncpg.Connection) -> list[StoredHook]:
    """Hooks of companies Setup no longer chooses (another company chosen, unbound): to delete."""
    rows = await db.fetch(
        """
        SELECT h.account_id, h.procore_company_id, h.procore_hook_id, h.reconciled_until,
               '{}'::text[] AS enabled_modules
          FROM webhook_hooks h
         WHERE NOT EXISTS (SELECT 1 FROM setups s
                            WHERE s.account_id = h.account_id AND s.procore_company_id = h.procore_company_id)
        """
    )
    return [_hook(r) for r in rows]


async def save_hook(
    db: asyncpg.Connection, account_id: str, company_id: int, hook_id: int, digest: str, destination_url: str
) -> None:
    """The hook of a company (replacing an older one), with its secret's digest; reconcile starts from now."""
    await db.execute(
        """
        INSERT INTO webhook_hooks (procore_company_id, account_id, procore_hook_id, secret_sha256, destination_url,
                                   reconciled_until)
        VALUES ($1, $2, $3, $4, $5, now())
        ON CONFLICT (procore_company_id) DO UPDATE
           SET account_id = EXCLUDED.account_id, procore_hook_id = EXCLUDED.procore_hook_id,
               secret_sha256 = EXCLUDED.secret_sha256, destination_url = EXCLUDED.destination_url,
               registered_at = now(), reconciled_until = now()
        """,
        company_id,
        account_id,
        hook_id,
        digest,
        destination_url,
    )


async def drop_hook(db: asyncpg.Connection, company_id: int, hook_id: int) -> None:
    await db.execute(
        "DELETE FROM webhook_hooks WHERE procore_company_id = $1 AND procore_hook_id = $2", company_id, hook_id
    )


async def hook_by_digest(db: asyncpg.Connection, digest: str) -> StoredHook | None:
    r = await db.fetchrow(
        """
        SELECT h.account_id, h.procore_company_id, h.procore_hook_id, h.reconciled_until,
               coalesce(s.enabled_modules, '{}') AS enabled_modules
          FROM webhook_hooks h
          LEFT JOIN setups s ON s.account_id = h.account_id AND s.procore_company_id = h.procore_company_id
         WHERE h.secret_sha256 = $1
        """,
        digest,
    )
    return None if r is None else _hook(r)


async def take_delivery(db: asyncpg.Connection, company_id: int, delivery_id: str) -> bool:
    """Record a delivery as taken; False when it was taken before (a duplicate or a retry)."""
    taken = await db.fetchval(
        """
        INSERT INTO webhook_deliveries (procore_company_id, delivery_id) VALUES ($1, $2)
        ON CONFLICT DO NOTHING RETURNING true
        """,
        company_id,
        delivery_id,
    )
    await db.execute("UPDATE webhook_hooks SET last_delivery_at = now() WHERE procore_company_id = $1", company_id)
    return bool(taken)


async def prune_deliveries(db: asyncpg.Connection, keep_s: float) -> int:
    deleted: str = await db.execute(
        "DELETE FROM webhook_deliveries WHERE received_at < now() - make_interval(secs => $1)", keep_s
    )
    return int(deleted.split()[-1])


async def hooks_to_reconcile(db: asyncpg.Connection, every_s: float) -> list[StoredHook]:
    """Hooks of chosen companies whose last reconcile is older than `every_s`."""
    rows = await db.fetch(
        """
        SELECT h.account_id, h.procore_company_id, h.procore_hook_id, h.reconciled_until, s.enabled_modules
          FROM webhook_hooks h
          JOIN setups s ON s.account_id = h.account_id AND s.procore_company_id = h.procore_company_id
          JOIN connections c ON c.account_id = h.account_id AND c.status = 'connected'
         WHERE h.reconciled_until IS NULL OR h.reconciled_until < now() - make_interval(secs => $1)
        """,
        every_s,
    )
    return [_hook(r) for r in rows]


async def set_reconciled_until(db: asyncpg.Connection, company_id: int, until: datetime) -> None:
    await db.execute("UPDATE webhook_hooks SET reconciled_until = $2 WHERE procore_company_id = $1", company_id, until)


async def mapped_projects(db: asyncpg.Connection, account_id: str) -> list[int]:
    """The Procore projects the account's job sites are mapped to (broken mappings excluded)."""
    rows = await db.fetch(
        """
        SELECT DISTINCT procore_id FROM mappings
         WHERE account_id = $1 AND entity = 'project' AND broken_reason IS NULL ORDER BY procore_id
        """,
        account_id,
    )
    return [r["procore_id"] for r in rows]


def _hook(r: asyncpg.Record) -> StoredHook:
    return StoredHook(
        r["account_id"],
        r["procore_company_id"],
        r["procore_hook_id"],
        r["reconciled_until"],
        list(r["enabled_modules"]),
    )


async def replace_seen(
    db: asyncpg.Connection,
    company_id: int,
    module: str,
    project_id: int,
    start: date,
    end: date,
    seen: Sequence[tuple[int, date]],
) -> list[int]:
    """Remember the logs a reconcile saw in the window [start, end] of one project; returns the ids seen in that
    window before and missing now (deleted in Procore since)."""
    before = await db.fetch(
        "DELETE FROM reconcile_seen WHERE procore_company_id = $1 AND module = $2 AND project_id = $3"
        " AND log_date BETWEEN $4 AND $5 RETURNING record_id",
        company_id,
        module,
        project_id,
        start,
        end,
    )
    await db.executemany(
        "INSERT INTO reconcile_seen (procore_company_id, module, project_id, record_id, log_date)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (procore_company_id, module, record_id)"
        " DO UPDATE SET project_id = EXCLUDED.project_id, log_date = EXCLUDED.log_date",
        [(company_id, module, project_id, record_id, day) for record_id, day in seen],
    )
    now = {record_id for record_id, _ in seen}
    return sorted(int(r["record_id"]) for r in before if int(r["record_id"]) not in now)
