"""A timecard publish request carries its entry's clock times, computed from the stored timelogs when the request is
built (first clock-in, last clock-out, the gaps as lunch; or `durations_only`), and the Procore names the publisher's
Failed reasons use (real PostgreSQL, real handlers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import pytest

from services.aggregator import handlers
from services.aggregator.adapters.store import Store
from shared import db
from shared.events import (
    CellScope,
    MappingChanged,
    Module,
    ProcoreEntity,
    PublishAction,
    PublishEntries,
    PublishToProcore,
    SetupChanged,
    TimelogUpserted,
)
from shared.topics import Topics
from tests.support.database import ProvisionedDatabase, migrated
from tests.support.principals import TEST_BACKEND

pytestmark = pytest.mark.integration
ACCOUNT = "acc-clock"
DAY = date(2026, 3, 2)
TOPICS = Topics("clock.")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=UTC)


@pytest.fixture
async def pool(database: ProvisionedDatabase) -> AsyncIterator[asyncpg.Pool]:
    await migrated(database, "aggregator")
    p = await db.create_pool(database.dsn("aggregator"), database.schema("aggregator"), max_size=4)
    async with p.acquire() as conn, conn.transaction():
        await handlers.apply_mapping_change(
            Store(conn),
            SetupChanged(account_id=ACCOUNT, procore_company_id=7, enabled_modules=[Module.TIMECARD], two_way=False),
        )
        for entity, mc_id, procore_id, name in (
            (ProcoreEntity.PROJECT, "s1", 100, "Tower A"),
            (ProcoreEntity.EMPLOYEE, "ada", 301, "Ada Lovelace"),
            (ProcoreEntity.EMPLOYEE, "bob", 302, "Bob Ray"),
            (ProcoreEntity.PAYROLL_TYPE, "REG", 400, "Regular"),
        ):
            change = MappingChanged(
                account_id=ACCOUNT, entity=entity, mobiclocks_id=mc_id, procore_id=procore_id, procore_name=name
            )
            await handlers.apply_mapping_change(Store(conn), change)
    yield p
    await p.close()


def timelog(tid: str, employee: str, **times: Any) -> TimelogUpserted:
    return TimelogUpserted(
        account_id=ACCOUNT,
        timelog_id=tid,
        revision=1,
        employee_id=employee,
        company_id="c1",
        job_site_id="s1",
        work_date=DAY,
        pay_id="REG",
        **times,
    )


async def test_timecard_requests_carry_clock_times_or_say_durations_only(pool: asyncpg.Pool) -> None:
    events = [
        timelog("t1", "ada", clock_in=at(7), clock_out=at(12)),
        timelog("t2", "ada", clock_in=at(12, 45), clock_out=at(16)),
        timelog("t3", "bob", clock_in=at(7), clock_out=at(11)),
        timelog("t4", "bob", duration_seconds=3600),
    ]
    async with pool.acquire() as conn, conn.transaction():
        await handlers.apply_timelog_events(Store(conn), events)
        cmd = PublishEntries(
            account_id=ACCOUNT,
            module=Module.TIMECARD,
            action=PublishAction.PUBLISH,
            scope=CellScope(job_site_id="s1", work_date=DAY),
            **TEST_BACKEND.requester(),
        )
        assert await handlers.publish_entries(Store(conn), cmd, TOPICS) == 2
        rows = await conn.fetch("DELETE FROM outbox RETURNING payload::text AS payload")
    requests = {r.person_name: r for r in (PublishToProcore.model_validate(json.loads(row["payload"])) for row in rows)}
    ada, bob = requests["Ada Lovelace"], requests["Bob Ray"]
    assert ada.clock is not None
    assert bob.clock is not None
    assert (ada.clock.first_in, ada.clock.last_out, ada.clock.lunch_minutes) == (at(7), at(16), 45)
    assert not ada.clock.durations_only
    assert ada.payload["hours"] in ("8.25", "8.250", "8.2500")
    assert bob.clock.durations_only
    assert bob.clock.first_in is None
    assert ada.project_name == "Tower A" == bob.project_name
