"""Company leases and fencing on real PostgreSQL, Procore writes against the sandbox over real HTTP.

The publisher's own pieces (lease store, attempt log, Procore records) wired by hand, so a test can
play two instances and stop one's renewals at will — the way a paused or partitioned old owner
behaves: it keeps running, but its lease runs out and another instance takes the company over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from services.publisher.adapters.attempts import AttemptLog
from services.publisher.adapters.leases import LeaseStore
from services.publisher.adapters.procore import ProcoreRecords
from services.publisher.domain import RESOURCES
from services.publisher.lease import Lease, LeaseExpired, LeaseLost
from shared import db
from shared.events import Module, ProcorePublishFinished, PublishOutcome
from shared.procore import ProcoreClient, RateLimiter, TokenSource
from tests.support.database import ProvisionedDatabase, migrated
from tests.support.publisher import Company, Sandbox, checked_sandbox, request_for

pytestmark = pytest.mark.integration


@dataclass
class Parts:
    pool: asyncpg.Pool
    attempts: AttemptLog
    sandbox: Sandbox
    company: Company
    http: httpx.AsyncClient

    def store(self, owner: str, ttl_s: float, grace_s: float = 0.0) -> LeaseStore:
        return LeaseStore(self.pool, owner, ttl_s, grace_s)

    def records(self, lease: Lease) -> ProcoreRecords:
        tokens = TokenSource(self.http, self.sandbox.url, "sandbox-client", "sandbox-secret")

        async def token(company_id: int, force: bool) -> str:
            return await tokens.get(force)

        client = ProcoreClient(self.http, self.sandbox.url, token, RateLimiter(), max_attempts=1)
        return ProcoreRecords(
            client, RESOURCES[Module.MANPOWER], self.company.id, self.company.project, guard=lease.check
        )


@pytest.fixture
async def parts(database: ProvisionedDatabase, sandbox_url: str) -> AsyncIterator[Parts]:
    await migrated(database, "publisher")
    pool = await db.create_pool(database.dsn("publisher"), database.schema("publisher"))
    try:
        async with checked_sandbox(sandbox_url) as sandbox, httpx.AsyncClient(timeout=10) as http:
            company = await sandbox.company()
            yield Parts(pool, AttemptLog(pool, "t.procore.publish-results"), sandbox, company, http)
    finally:
        await pool.close()


def lease_of(claimed_token: int, company_id: int, ttl_s: float, margin_s: float = 0.1) -> Lease:
    return Lease(company_id, claimed_token, time.monotonic() + ttl_s - margin_s)


async def test_one_owner_at_a_time_and_every_takeover_grows_the_token(parts: Parts) -> None:
    first, second = parts.store("first", ttl_s=0.6), parts.store("second", ttl_s=30)
    request = request_for(Module.MANPOWER, parts.company)
    await parts.attempts.receive([(request, {})])

    (claimed,) = await first.claim(5)
    assert claimed.company_id == parts.company.id
    assert claimed.quiet_s == 0
    assert await second.claim(5) == []  # held: not free for anybody else
    assert await first.renew({parts.company.id: claimed.token}, {parts.company.id: {"remaining": 3}}) == {
        parts.company.id
    }
    assert await second.renew({parts.company.id: claimed.token}, {}) == set()  # not its lease

    await asyncio.sleep(0.8)  # first stops renewing: its lease expires
    (taken,) = await second.claim(5)
    assert taken.token == claimed.token + 1
    assert taken.budget == {"remaining": 3}  # the budget travels with the lease
    assert await first.renew({parts.company.id: claimed.token}, {}) == set()  # too late: taken over

    assert await second.release(parts.company.id, taken.token, {"remaining": 1}, idle=True) is False  # work left
    assert await second.release(parts.company.id, taken.token, {"remaining": 1}, idle=False) is True
    (again,) = await first.claim(5)
    assert again.token == taken.token + 1
    assert again.budget == {"remaining": 1}
    assert again.quiet_s == 0
    with pytest.raises(LeaseLost):
        await second.release(parts.company.id, taken.token, None, idle=False)


async def test_a_lease_of_ours_that_expired_unclaimed_is_renewed_with_the_same_token(parts: Parts) -> None:
    store = parts.store("only", ttl_s=0.3)
    await parts.attempts.receive([(request_for(Module.MANPOWER, parts.company), {})])
    (claimed,) = await store.claim(1)
    await asyncio.sleep(0.5)  # the database was away for longer than the TTL, nobody else took it
    assert await store.renew({parts.company.id: claimed.token}, {}) == {parts.company.id}


async def test_an_old_owner_cannot_write_to_the_attempt_log_or_procore_after_a_takeover(parts: Parts) -> None:
    old_store, new_store = parts.store("old", ttl_s=1.0), parts.store("new", ttl_s=30, grace_s=2.0)
    request = request_for(Module.MANPOWER, parts.company)
    await parts.attempts.receive([(request, {})])

    (claimed,) = await old_store.claim(1)
    old = lease_of(claimed.token, parts.company.id, ttl_s=1.0)
    started = await parts.attempts.start(request.request_id, old)
    assert not started.recovering

    # The old owner pauses (no renewals) in the middle of the request; its lease runs out and is taken over.
    await asyncio.sleep(1.2)
    (taken,) = await new_store.claim(1)
    assert taken.token == claimed.token + 1
    assert 0.5 < taken.quiet_s <= 2.0  # a request was in flight: the new owner waits for a late write to land
    new = lease_of(taken.token, parts.company.id, ttl_s=30)

    # It wakes up and carries on: the database refuses each of its writes …
    result = ProcorePublishFinished(
        account_id=request.account_id,
        request_id=request.request_id,
        entry_id=request.entry_id,
        entry_version=1,
        module=request.module,
        outcome=PublishOutcome.PUBLISHED,
        procore_id=1,
    )
    writes = [
        lambda: parts.attempts.start(request.request_id, old),
        lambda: parts.attempts.note_deleted(request.request_id, 1, old),
        lambda: parts.attempts.note_error(request.request_id, "boom", old),
        lambda: parts.attempts.finish(result, old, {}),
    ]
    for write in writes:
        with pytest.raises(LeaseLost):
            await write()
    # … and no Procore write leaves it: its lease ran out by its own clock too.
    old = Lease(parts.company.id, claimed.token, old.valid_until)  # as it knew it, not told it was lost
    seq = await parts.sandbox.last_seq()
    with pytest.raises(LeaseExpired):
        await parts.records(old).create({"date": "2026-11-20", "num_workers": 1, "notes": request.marker})
    assert [e for e in await parts.sandbox.requests(since=seq) if e["path"].startswith("/rest/")] == []

    (row,) = await parts.pool.fetch("SELECT state, fencing_token, errors FROM attempts")
    assert (row["state"], row["fencing_token"], row["errors"]) == ("started", claimed.token, 0)
    assert await parts.pool.fetchval("SELECT count(*) FROM outbox") == 0

    # The new owner continues: it finds the request started by someone else and reconciles first.
    resumed = await parts.attempts.start(request.request_id, new)
    assert resumed.recovering
    assert resumed.tries == 2
    record = await parts.records(new).create({"date": "2026-11-20", "num_workers": 1, "notes": request.marker})
    assert await parts.attempts.finish(result.model_copy(update={"procore_id": record["id"]}), new, {"x": "y"})
    assert await parts.pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert len(await parts.sandbox.records(Module.MANPOWER, parts.company)) == 1


async def test_a_takeover_waits_for_a_fenced_write_in_progress(parts: Parts, postgres_dsn: str) -> None:
    old_store, new_store = parts.store("old", ttl_s=0.3), parts.store("new", ttl_s=30)
    await parts.attempts.receive([(request_for(Module.MANPOWER, parts.company), {})])
    (claimed,) = await old_store.claim(1)
    async with parts.pool.acquire() as conn, conn.transaction():
        # what every fenced write does first: share-lock the lease row with the token it holds
        assert await conn.fetchval(
            "SELECT true FROM company_leases WHERE company_id = $1 AND fencing_token = $2 FOR SHARE",
            parts.company.id,
            claimed.token,
        )
        await asyncio.sleep(0.5)  # expired meanwhile, but the old owner's write has not committed yet
        assert await new_store.claim(1) == []
    (taken,) = await new_store.claim(1)  # once it committed
    assert taken.token == claimed.token + 1
