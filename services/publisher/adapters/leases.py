"""Company leases in PostgreSQL: who works which Procore company, until when, under which fencing token.

A lease is free when it has no owner (released) or its expiry has passed. Claiming a lease sets
the owner and the expiry and increments the fencing token, so every claim — a takeover above all —
starts a new epoch that the attempt log can tell apart from the previous one. The owner renews its
leases well before they expire and releases them when it runs out of work for the company or stops.

Taking over a lease that *expired* (its owner vanished) while the company had a request in flight
sets `quiet_until` to the old expiry plus a grace period: a write the old owner sent just before its
lease ran out may still be landing in Procore, and the new owner looks for it only after that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.publisher.adapters.attempts import WORKABLE
from services.publisher.lease import LeaseLost


@dataclass(frozen=True)
class Claimed:
    company_id: int
    token: int
    budget: dict[str, Any] | None
    """The company's rate budget as the previous owner last saw it."""
    quiet_s: float
    """Seconds to wait before the first Procore call (a takeover's grace), 0 when none."""


class LeaseStore:
    def __init__(self, pool: asyncpg.Pool, owner: str, ttl_s: float, takeover_grace_s: float) -> None:
        self._pool = pool
        self.owner = owner
        self._ttl_s = ttl_s
        self._grace_s = takeover_grace_s

    async def heartbeat(self) -> int:
        """Say this instance is alive; return how many instances are (this one included)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO instances (instance_id, seen_until) VALUES ($1, now() + make_interval(secs => $2))"
                " ON CONFLICT (instance_id) DO UPDATE SET seen_until = EXCLUDED.seen_until",
                self.owner,
                self._ttl_s,
            )
            await conn.execute("DELETE FROM instances WHERE seen_until < now() - interval '1 hour'")
            live: int = await conn.fetchval("SELECT count(*) FROM instances WHERE seen_until > now()")
        return live

    async def tick(
        self, held: Mapping[int, int], budgets: Mapping[int, dict[str, Any] | None]
    ) -> tuple[set[int], int, int]:
        """`renew`, `heartbeat` and `companies_with_work` in one statement (one round trip: with hundreds of
        companies at work the event loop is busy, and every round trip of a renewal waits for a turn of it).
        Returns (companies renewed, live instances, companies with work)."""
        companies = list(held)
        row = await self._pool.fetchrow(
            f"""
            WITH renewed AS (
                UPDATE company_leases l
                SET expires_at = now() + make_interval(secs => $4), budget = COALESCE(x.budget, l.budget)
                FROM unnest($1::bigint[], $2::bigint[], $3::jsonb[]) AS x(company_id, token, budget)
                WHERE l.company_id = x.company_id AND l.fencing_token = x.token AND l.owner = $5
                RETURNING l.company_id
            ), beat AS (
                INSERT INTO instances (instance_id, seen_until) VALUES ($5, now() + make_interval(secs => $4))
                ON CONFLICT (instance_id) DO UPDATE SET seen_until = EXCLUDED.seen_until
                RETURNING 1
            ), gone AS (
                DELETE FROM instances WHERE seen_until < now() - interval '1 hour' RETURNING 1
            )
            SELECT ARRAY(SELECT company_id FROM renewed) AS renewed,
                   (SELECT count(*) FROM instances WHERE seen_until > now() AND instance_id <> $5) + 1 AS live,
                   (SELECT count(DISTINCT company_id) FROM attempts WHERE {WORKABLE}) AS with_work,
                   (SELECT count(*) FROM beat) + (SELECT count(*) FROM gone) AS _written
            """,
            companies,
            [held[c] for c in companies],
            [budgets.get(c) for c in companies],
            self._ttl_s,
            self.owner,
        )
        return set(row["renewed"]), int(row["live"]), int(row["with_work"])

    async def leave(self) -> None:
        await self._pool.execute("DELETE FROM instances WHERE instance_id = $1", self.owner)

    async def companies_with_work(self) -> int:
        count: int = await self._pool.fetchval(f"SELECT count(DISTINCT company_id) FROM attempts WHERE {WORKABLE}")
        return count

    async def claim(self, limit: int, only: Sequence[int] | None = None, exclude: Sequence[int] = ()) -> list[Claimed]:
        """Claim up to `limit` free or expired leases of companies with work (of `only`, when given)."""
        if limit <= 0:
            return []
        only_list = list(only) if only is not None else None
        # Two statements, no transaction around them: rows locked by a claim are never held across a round trip (a
        # busy event loop makes that seconds, and the other instances' renewals would queue behind the locks). An
        # unowned lease row is free for anybody, so another instance claiming it in between is fine.
        async with self._pool.acquire() as conn:
            await conn.execute(
                f"INSERT INTO company_leases (company_id) SELECT DISTINCT a.company_id FROM attempts a WHERE {WORKABLE}"
                " AND ($1::bigint[] IS NULL OR a.company_id = ANY($1))"
                " AND NOT EXISTS (SELECT 1 FROM company_leases c WHERE c.company_id = a.company_id)"
                " ON CONFLICT DO NOTHING",
                only_list,
            )
            rows = await conn.fetch(
                f"""
                UPDATE company_leases l
                SET owner = $2, fencing_token = l.fencing_token + 1, claimed_at = now(),
                    expires_at = now() + make_interval(secs => $3),
                    quiet_until = CASE
                        WHEN l.owner IS NOT NULL AND EXISTS (
                            SELECT 1 FROM attempts a WHERE a.company_id = l.company_id AND a.state = 'started')
                        THEN GREATEST(l.quiet_until, l.expires_at + make_interval(secs => $4))
                        ELSE l.quiet_until END
                FROM (
                    SELECT c.company_id FROM company_leases c
                    WHERE (c.owner IS NULL OR c.expires_at <= now())
                      AND ($1::bigint[] IS NULL OR c.company_id = ANY($1))
                      AND NOT c.company_id = ANY($5::bigint[])
                      AND c.company_id IN (SELECT company_id FROM attempts WHERE {WORKABLE})
                    ORDER BY c.expires_at
                    LIMIT $6
                    FOR UPDATE SKIP LOCKED
                ) free
                WHERE l.company_id = free.company_id
                RETURNING l.company_id, l.fencing_token, l.budget,
                    EXTRACT(EPOCH FROM GREATEST(l.quiet_until, now()) - now())::float8 AS quiet_s
                """,
                only_list,
                self.owner,
                self._ttl_s,
                self._grace_s,
                list(exclude),
                limit,
            )
        return [Claimed(r["company_id"], r["fencing_token"], r["budget"], r["quiet_s"]) for r in rows]

    async def renew(self, held: Mapping[int, int], budgets: Mapping[int, dict[str, Any] | None]) -> set[int]:
        """Extend the leases still ours (company → token) and save their budgets; returns the companies renewed.

        A lease of ours that expired meanwhile (the database was away) is renewed as long as nobody claimed it."""
        if not held:
            return set()
        companies = list(held)
        rows = await self._pool.fetch(
            """
            UPDATE company_leases l
            SET expires_at = now() + make_interval(secs => $4), budget = COALESCE(x.budget, l.budget)
            FROM unnest($1::bigint[], $2::bigint[], $3::jsonb[]) AS x(company_id, token, budget)
            WHERE l.company_id = x.company_id AND l.fencing_token = x.token AND l.owner = $5
            RETURNING l.company_id
            """,
            companies,
            [held[c] for c in companies],
            [budgets.get(c) for c in companies],
            self._ttl_s,
            self.owner,
        )
        return {r["company_id"] for r in rows}

    async def release(
        self, company_id: int, token: int, budget: dict[str, Any] | None, *, idle: bool, quiet_s: float = 0.0
    ) -> bool:
        """Give a lease up (saving the budget). `idle`: only if the company has no work left — False otherwise.

        `quiet_s`: a write may still be on its way to Procore; the next owner waits that long first.
        Raises `LeaseLost` when the lease is no longer ours."""
        async with self._pool.acquire() as conn, conn.transaction():
            held = await conn.fetchval(
                "SELECT true FROM company_leases WHERE company_id = $1 AND fencing_token = $2 AND owner = $3"
                " FOR UPDATE",
                company_id,
                token,
                self.owner,
            )
            if not held:
                raise LeaseLost(f"company {company_id}: lease {token} was taken over")
            if idle and await conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM attempts WHERE company_id = $1 AND {WORKABLE})", company_id
            ):
                return False
            await conn.execute(
                """
                UPDATE company_leases
                SET owner = NULL, expires_at = now(), budget = COALESCE($2::jsonb, budget),
                    quiet_until = GREATEST(quiet_until, now() + make_interval(secs => $3))
                WHERE company_id = $1
                """,
                company_id,
                budget,
                quiet_s,
            )
        return True
