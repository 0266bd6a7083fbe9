"""No entry stays Publishing, and a publish that cannot be carried out says why (real PostgreSQL, real handlers).

- A request whose result never comes (lost by the broker, a publisher that died, a lost result) is
  sent again unchanged (same request_id) after a timeout, backing off, and written to the history.
- Several sweepers (one per aggregator instance) re-drive each overdue request once.
- A publish command that cannot be carried out leaves Failed with the reason, and a history row.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import pytest

from services.aggregator import handlers
from services.aggregator.adapters.store import Store
from shared import db
from shared.events import (
    CellScope,
    DateRangeScope,
    MappingChanged,
    Module,
    ProcoreEntity,
    ProcorePublishFinished,
    PublishAction,
    PublishEntries,
    PublishOutcome,
    SetupChanged,
    TimelogDeleted,
    TimelogUpserted,
)
from shared.topics import Topics
from tests.support.database import ProvisionedDatabase, migrated
from tests.support.kafka import eventually
from tests.support.principals import TEST_BACKEND

pytestmark = pytest.mark.integration
ACCOUNT = "acc-sweep"
DAY = date(2026, 3, 2)
TOPICS = Topics("sweep.")
# Long enough that a loaded machine (CI runs this beside the browser and chaos suites) does not make a fresh request
# look overdue; short enough to keep the test quick.
FAST = handlers.RedrivePolicy(after_s=1.0, max_interval_s=60)


@pytest.fixture
async def pool(database: ProvisionedDatabase) -> AsyncIterator[asyncpg.Pool]:
    await migrated(database, "aggregator")
    p = await db.create_pool(database.dsn("aggregator"), database.schema("aggregator"), max_size=4)
    async with p.acquire() as conn, conn.transaction():
        await handlers.apply_mapping_change(
            Store(conn),
            SetupChanged(account_id=ACCOUNT, procore_company_id=7, enabled_modules=[Module.MANPOWER], two_way=False),
        )
        for entity, mc_id, procore_id in ((ProcoreEntity.PROJECT, "s1", 100), (ProcoreEntity.VENDOR, "c1", 200)):
            change = MappingChanged(account_id=ACCOUNT, entity=entity, mobiclocks_id=mc_id, procore_id=procore_id)
            await handlers.apply_mapping_change(Store(conn), change)
    yield p
    await p.close()


def timelog(tid: str, crew: str = "A", rev: int = 1) -> TimelogUpserted:
    return TimelogUpserted(
        account_id=ACCOUNT,
        timelog_id=tid,
        revision=rev,
        employee_id=f"emp-{tid}",
        company_id="c1",
        crew_tag=crew,
        job_site_id="s1",
        work_date=DAY,
        duration_seconds=8 * 3600,
        pay_id="REG",
    )


def command(action: PublishAction = PublishAction.PUBLISH) -> PublishEntries:
    return PublishEntries(
        account_id=ACCOUNT,
        module=Module.MANPOWER,
        action=action,
        scope=CellScope(job_site_id="s1", work_date=DAY),
        **TEST_BACKEND.requester(),
    )


async def apply(pool: asyncpg.Pool, *events: TimelogUpserted | TimelogDeleted) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await handlers.apply_timelog_events(Store(conn), list(events))


async def publish(pool: asyncpg.Pool, cmd: PublishEntries, policy: handlers.RedrivePolicy = FAST) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await handlers.publish_entries(Store(conn), cmd, TOPICS, policy)


async def take_outbox(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """What the relay would send (and then delete): here the broker "loses" it."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("DELETE FROM outbox RETURNING id, topic, key, payload::text AS payload")
    return [{"topic": r["topic"], "key": r["key"], "payload": json.loads(r["payload"])} for r in rows]


async def sweep(pool: asyncpg.Pool, policy: handlers.RedrivePolicy = FAST) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await handlers.redrive_stalled_publishes(Store(conn), TOPICS, policy)


async def entries(pool: asyncpg.Pool) -> dict[uuid.UUID, asyncpg.Record]:
    async with pool.acquire() as conn:
        return {r["entry_id"]: r for r in await conn.fetch("SELECT * FROM entries")}


async def history(pool: asyncpg.Pool, entry_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT action, request_id, outcome, message FROM publish_history WHERE entry_id = $1 ORDER BY id",
            entry_id,
        )
    return [tuple(r) for r in rows]


async def result(pool: asyncpg.Pool, request: dict[str, Any], procore_id: int = 9001) -> bool:
    finished = ProcorePublishFinished(
        account_id=ACCOUNT,
        request_id=uuid.UUID(request["request_id"]),
        entry_id=uuid.UUID(request["entry_id"]),
        entry_version=request["entry_version"],
        module=Module(request["module"]),
        outcome=PublishOutcome.PUBLISHED,
        procore_id=procore_id,
    )
    async with pool.acquire() as conn, conn.transaction():
        return await handlers.apply_publish_result(Store(conn), finished)


async def test_a_request_whose_result_never_comes_is_sent_again_unchanged_until_answered(pool: asyncpg.Pool) -> None:
    await apply(pool, timelog("t1"))
    assert await publish(pool, command()) == 1
    (sent,) = await take_outbox(pool)  # relayed, then lost: no result will ever come
    assert await sweep(pool) == 0, "not overdue yet"

    await eventually(lambda: sweep(pool), lambda n: n == 1, timeout_s=10, what="a re-drive")
    (again,) = await take_outbox(pool)
    assert again == sent, "the identical request: same request_id, payload, topic and key"
    entry_id = uuid.UUID(sent["payload"]["entry_id"])
    assert (await entries(pool))[entry_id]["status"] == "publishing"
    redriven = [h for h in await history(pool, entry_id) if h[0] == handlers.REDRIVEN]
    assert len(redriven) == 1
    assert redriven[0][1] == uuid.UUID(sent["payload"]["request_id"])
    assert "sent it again (re-drive 1)" in redriven[0][3]
    async with pool.acquire() as conn:
        wait = await conn.fetchval("SELECT EXTRACT(EPOCH FROM redrive_at - now()) FROM publish_requests")
    assert FAST.after_s < wait <= 2 * FAST.after_s, "the next re-drive waits twice as long"

    await eventually(lambda: sweep(pool), lambda n: n == 1, timeout_s=10, what="a second re-drive")
    assert await take_outbox(pool) == [sent]

    # the publisher answers (to the original or a re-sent copy: they are one request)
    assert await result(pool, sent["payload"])
    assert (await entries(pool))[entry_id]["status"] == "published"
    assert not await result(pool, sent["payload"]), "an answer to a re-drive changes nothing twice"
    await asyncio.sleep(FAST.after_s * 3)
    assert await sweep(pool) == 0
    assert await take_outbox(pool) == []
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM publish_requests") == 0


async def test_sweepers_of_several_instances_re_drive_each_overdue_request_once(pool: asyncpg.Pool) -> None:
    await apply(pool, *(timelog(f"t{n}", crew=f"crew-{n}") for n in range(30)))
    assert await publish(pool, command()) == 30
    sent = {r["payload"]["request_id"] for r in await take_outbox(pool)}
    await asyncio.sleep(FAST.after_s * 1.5)
    policy = handlers.RedrivePolicy(after_s=FAST.after_s, max_interval_s=60, batch=20)
    async with pool.acquire() as a, pool.acquire() as b, a.transaction():
        first = await handlers.redrive_stalled_publishes(Store(a), TOPICS, policy)
        # a second instance sweeps while the first has not committed: it skips what the first holds
        async with b.transaction():
            second = await handlers.redrive_stalled_publishes(Store(b), TOPICS, policy)
    assert (first, second) == (20, 10)
    resent = [r["payload"]["request_id"] for r in await take_outbox(pool)]
    assert sorted(resent) == sorted(sent)


async def test_a_request_queued_before_requests_were_kept_is_rebuilt_with_its_request_id(pool: asyncpg.Pool) -> None:
    """Entries that were already Publishing when the aggregator was upgraded (the migration marks them due)."""
    await apply(pool, timelog("t1"))
    await publish(pool, command())
    (sent,) = await take_outbox(pool)
    async with pool.acquire() as conn:
        # what migration 005 leaves for an entry that was Publishing before it ran
        await conn.execute("UPDATE publish_requests SET payload = NULL, topic = '', redrive_at = now()")
    assert await sweep(pool) == 1
    (rebuilt,) = await take_outbox(pool)
    assert rebuilt["topic"] == TOPICS.publish_requests
    assert rebuilt["key"] == sent["key"]
    assert rebuilt["payload"] == sent["payload"] | {"event_id": rebuilt["payload"]["event_id"]} | {
        "occurred_at": rebuilt["payload"]["occurred_at"]
    }
    await eventually(lambda: sweep(pool), lambda n: n == 1, timeout_s=10, what="a re-drive of the rebuilt request")
    assert await take_outbox(pool) == [rebuilt], "once rebuilt, it is kept and re-sent unchanged"


async def published_then_deleted(pool: asyncpg.Pool) -> uuid.UUID:
    await apply(pool, timelog("t1"), timelog("t2"))
    await publish(pool, command())
    (sent,) = await take_outbox(pool)
    assert await result(pool, sent["payload"])
    await apply(pool, TimelogDeleted(account_id=ACCOUNT, timelog_id="t2", revision=2))
    entry_id = uuid.UUID(sent["payload"]["entry_id"])
    assert (await entries(pool))[entry_id]["status"] == "deleted"
    return entry_id


async def test_publishing_without_a_procore_company_fails_with_what_to_do(pool: asyncpg.Pool) -> None:
    entry_id = await published_then_deleted(pool)
    async with pool.acquire() as conn, conn.transaction():
        setup = SetupChanged(
            account_id=ACCOUNT, procore_company_id=None, enabled_modules=[Module.MANPOWER], two_way=False
        )
        await handlers.apply_mapping_change(Store(conn), setup)
    assert (await entries(pool))[entry_id]["status"] == "deleted", "still waiting for its Procore record to go"

    assert await publish(pool, command()) == 0
    row = (await entries(pool))[entry_id]
    reason = "Choose the Procore company in Setup, then publish again"
    assert (row["status"], row["last_error"], row["publishing_request_id"]) == ("failed", reason, None)
    assert (await history(pool, entry_id))[-1] == ("publish", None, "failed", reason)
    assert await take_outbox(pool) == []
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM publish_requests") == 0


async def test_force_publishing_an_entry_whose_job_site_lost_its_project_fails_naming_it(pool: asyncpg.Pool) -> None:
    await apply(pool, timelog("t1"))
    await publish(pool, command())
    (sent,) = await take_outbox(pool)
    assert await result(pool, sent["payload"])
    async with pool.acquire() as conn, conn.transaction():
        unmapped = MappingChanged(account_id=ACCOUNT, entity=ProcoreEntity.PROJECT, mobiclocks_id="s1", procore_id=None)
        await handlers.apply_mapping_change(Store(conn), unmapped)
    entry_id = uuid.UUID(sent["payload"]["entry_id"])
    assert (await entries(pool))[entry_id]["status"] == "published"

    everything = command(PublishAction.FORCE_PUBLISH).model_copy(
        update={"scope": DateRangeScope(date_from=DAY, date_to=DAY)}
    )
    assert await publish(pool, everything) == 0
    row = (await entries(pool))[entry_id]
    reason = "Job site s1 is not mapped to a Procore project; map it in Setup, then publish again"
    assert (row["status"], row["last_error"]) == ("failed", reason)
    assert (await history(pool, entry_id))[-1] == ("force_publish", None, "failed", reason)
    assert await take_outbox(pool) == []
