"""Concurrent writers of one timelog, one entry and one account (several aggregator instances) serialize exactly.

Real PostgreSQL, the real handlers, several connections at once: what two instances do when they
consume two revisions of one timelog (a move changes its key, so revisions land on different
partitions), or two timelogs of one entry that does not exist yet.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from functools import partial

import asyncpg
import pytest

from services.aggregator import handlers
from services.aggregator.adapters import locks
from services.aggregator.adapters.store import Store
from shared import db
from shared.events import Module, SetupChanged, TimelogDeleted, TimelogUpserted
from shared.transient import transient_cause
from tests.bench.generator import Generator, Shape
from tests.support.database import ProvisionedDatabase, migrated
from tests.support.entries import entry_rows, mismatches
from tests.support.kafka import eventually

pytestmark = pytest.mark.integration
DAY = date(2026, 3, 2)
Timelog = TimelogUpserted | TimelogDeleted


@pytest.fixture
async def schema(database: ProvisionedDatabase) -> str:
    await migrated(database, "aggregator")
    return database.schema("aggregator")


@pytest.fixture
async def pool(database: ProvisionedDatabase, schema: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(database.dsn("aggregator"), schema, max_size=8)
    yield p
    await p.close()


async def enable(pool: asyncpg.Pool, *accounts: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for account in accounts:
            setup = SetupChanged(account_id=account, procore_company_id=1, enabled_modules=list(Module), two_way=False)
            await handlers.apply_mapping_change(Store(conn), setup)


def timelog(tid: str, rev: int, emp: str = "e1", site: str = "s1", hours: int = 8) -> TimelogUpserted:
    return TimelogUpserted(
        account_id="acc",
        timelog_id=tid,
        revision=rev,
        employee_id=emp,
        company_id="c1",
        crew_tag="A",
        job_site_id=site,
        work_date=DAY,
        duration_seconds=hours * 3600,
        pay_id="REG",
    )


async def waiting_on_a_lock(pool: asyncpg.Pool, pid: int) -> bool:
    async with pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid))


Work = Callable[[Store], Awaitable[object]]


async def race(pool: asyncpg.Pool, first: list[Timelog], second: list[Timelog] | Work) -> None:
    """`first` applied and left uncommitted; `second` applied meanwhile (it must wait); then both commit."""
    async with pool.acquire() as a, pool.acquire() as b:
        tx_a = a.transaction()
        await tx_a.start()
        await handlers.apply_timelog_events(Store(a), first)
        work = partial(handlers.apply_timelog_events, events=second) if isinstance(second, list) else second

        async def apply_second() -> None:
            async with b.transaction():
                await work(Store(b))

        other = asyncio.create_task(apply_second())
        pid = b.get_server_pid()
        await eventually(lambda: waiting_on_a_lock(pool, pid), bool, what="the second writer waiting for the first")
        assert not other.done()
        await tx_a.commit()
        await other


async def check(postgres_dsn: str, schema: str, live: list[TimelogUpserted]) -> None:
    stored = await entry_rows(postgres_dsn, schema)
    assert mismatches(stored, live) == []


async def test_two_revisions_of_a_timelog_not_stored_yet_apply_one_after_the_other(
    pool: asyncpg.Pool, postgres_dsn: str, schema: str
) -> None:
    await enable(pool, "acc")
    await race(pool, [timelog("t1", 1, hours=8)], [timelog("t1", 2, hours=4, site="s2")])
    await check(postgres_dsn, schema, [timelog("t1", 2, hours=4, site="s2")])


async def test_an_older_revision_arriving_second_changes_nothing(
    pool: asyncpg.Pool, postgres_dsn: str, schema: str
) -> None:
    await enable(pool, "acc")
    await race(pool, [timelog("t1", 2, hours=4)], [timelog("t1", 1, hours=8, site="s2")])
    await check(postgres_dsn, schema, [timelog("t1", 2, hours=4)])


async def test_a_delete_racing_with_the_first_revision_of_its_timelog(
    pool: asyncpg.Pool, postgres_dsn: str, schema: str
) -> None:
    await enable(pool, "acc")
    await race(pool, [timelog("t1", 1)], [TimelogDeleted(account_id="acc", timelog_id="t1", revision=2)])
    await check(postgres_dsn, schema, [])


async def test_two_timelogs_creating_the_same_new_entry_add_up(
    pool: asyncpg.Pool, postgres_dsn: str, schema: str
) -> None:
    await enable(pool, "acc")
    # same job site, day, company and crew: one manpower entry, which neither transaction finds stored
    first, second = timelog("t1", 1, emp="e1", hours=8), timelog("t2", 1, emp="e2", hours=4)
    await race(pool, [first, timelog("t3", 1, emp="e3", site="s3")], [second])
    await check(postgres_dsn, schema, [first, second, timelog("t3", 1, emp="e3", site="s3")])
    stored = await entry_rows(postgres_dsn, schema)
    (manpower,) = [r for r in stored.values() if r["module"] == "manpower" and r["job_site_id"] == "s1"]
    assert manpower["content"]["manpower"] == "2"
    assert manpower["members"] == {"e1": 1, "e2": 1}


def from_accounts(count: int) -> list[Timelog]:
    return [timelog(f"t{n}", 1).model_copy(update={"account_id": f"acc-{n}"}) for n in range(count)]


async def test_a_batch_from_many_accounts_holds_few_advisory_locks(pool: asyncpg.Pool) -> None:
    """PostgreSQL's shared lock table is small (max_locks_per_transaction times max_connections, for everyone):
    a batch of events from hundreds of accounts locks buckets of accounts, not each account."""
    batch = from_accounts(300)
    await enable(pool, *(e.account_id for e in batch))
    async with pool.acquire() as conn, conn.transaction():
        await handlers.apply_timelog_events(Store(conn), batch)
        held = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
    assert 0 < held <= locks.ACCOUNT_BUCKETS


@pytest.mark.parametrize("accounts", [1, 300])
async def test_a_recompute_of_an_account_waits_for_a_batch_of_that_account(
    pool: asyncpg.Pool, postgres_dsn: str, schema: str, accounts: int
) -> None:
    """A mapping change rebuilds its account from scratch: not while a batch of few or of many accounts
    (account locks or bucket locks) is still writing that account's entries."""
    batch = from_accounts(accounts)
    await enable(pool, *(e.account_id for e in batch))
    await race(pool, batch, partial(handlers.revalidate_account, account_id="acc-0"))
    await check(postgres_dsn, schema, [e for e in batch if isinstance(e, TimelogUpserted)])


async def with_retries(pool: asyncpg.Pool, work: Work) -> None:
    """What the consumer does: a transient failure (deadlock, concurrent creation) retries the whole transaction."""
    while True:
        try:
            async with pool.acquire() as conn, conn.transaction():
                await work(Store(conn))
            return
        except Exception as error:
            if transient_cause(error) is None:
                raise
            await asyncio.sleep(random.uniform(0, 0.05))


def batches_of(stream: list[Timelog], rng: random.Random) -> list[list[Timelog]]:
    batches, i = [], 0
    while i < len(stream):
        size = rng.randint(1, 60)
        batches.append(stream[i : i + size])
        i += size
    return batches


@pytest.mark.parametrize("seed", [1, 2])
async def test_concurrent_batches_and_setup_changes_equal_a_recompute(
    pool: asyncpg.Pool, postgres_dsn: str, schema: str, seed: int
) -> None:
    """Four writers apply batches of one stream at once, in any order (a small key space makes them collide),
    while a fifth keeps changing the accounts' setups (each change recomputes its account from scratch)."""
    gen = Generator(Shape(accounts=2, job_sites=2, employees=6, companies=2, cost_codes=3), seed=seed)
    accounts = [s.account_id for s in gen.setups()]
    stream: list[Timelog] = list(gen.events(1500))
    rng = random.Random(seed)
    stream += rng.sample(stream, 100)  # duplicates
    rng.shuffle(stream)  # and any order: revisions of one timelog end up in batches applied side by side
    queue = batches_of(stream, rng)
    await enable(pool, *accounts)

    async def apply_batches() -> None:
        while queue:
            batch = queue.pop()
            await with_retries(pool, partial(handlers.apply_timelog_events, events=batch))

    async def change_setups() -> None:
        while queue:
            account = rng.choice(accounts)
            modules = rng.sample(list(Module), rng.randint(0, 3))
            change = SetupChanged(account_id=account, procore_company_id=1, enabled_modules=modules, two_way=False)
            await with_retries(pool, partial(handlers.apply_mapping_change, change=change))
            await asyncio.sleep(0.05)

    await asyncio.gather(*(apply_batches() for _ in range(4)), change_setups())
    await enable(pool, *accounts)  # every module on again: entries must be back, exact

    stored = await entry_rows(postgres_dsn, schema)
    assert stored.orphan_members == []
    assert mismatches(stored, gen.live.values()) == []
