"""A mapping cleared because its Procore entity disappeared makes entries say so; remapping fixes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from services.aggregator import handlers
from services.aggregator.adapters.store import Store
from shared import db
from shared.events import MappingChanged, Module, ProcoreEntity, SetupChanged, TimelogUpserted
from tests.support.database import ProvisionedDatabase, migrated

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database: ProvisionedDatabase) -> AsyncIterator[asyncpg.Pool]:
    await migrated(database, "aggregator")
    p = await db.create_pool(database.dsn("aggregator"), database.schema("aggregator"), max_size=2)
    yield p
    await p.close()


async def errors_of(pool: asyncpg.Pool) -> tuple[str, list[str]]:
    row = await pool.fetchrow("SELECT status, errors FROM entries WHERE module = 'manpower'")
    assert row is not None
    return row["status"], row["errors"]


async def test_broken_vendor_mapping_is_explained_and_remapping_fixes_it(pool: asyncpg.Pool) -> None:
    async def change(event: SetupChanged | MappingChanged | TimelogUpserted) -> None:
        async with pool.acquire() as conn, conn.transaction():
            if isinstance(event, TimelogUpserted):
                await handlers.apply_timelog_events(Store(conn), [event])
            else:
                await handlers.apply_mapping_change(Store(conn), event)

    vendor = {"account_id": "a", "entity": ProcoreEntity.VENDOR, "mobiclocks_id": "c1"}
    await change(SetupChanged(account_id="a", procore_company_id=1, enabled_modules=[Module.MANPOWER], two_way=False))
    await change(MappingChanged(account_id="a", entity=ProcoreEntity.PROJECT, mobiclocks_id="s1", procore_id=10))
    await change(MappingChanged(**vendor, procore_id=20))
    await change(
        TimelogUpserted(
            account_id="a",
            timelog_id="t1",
            revision=1,
            employee_id="e1",
            company_id="c1",
            job_site_id="s1",
            work_date=date(2026, 3, 2),
            duration_seconds=3600,
            pay_id="REG",
        )
    )
    assert await errors_of(pool) == ("todo", [])

    reason = "Procore vendor Acme no longer exists in Procore"
    await change(MappingChanged(**vendor, procore_id=None, broken_reason=reason))
    assert await errors_of(pool) == ("non_publishable", [f"Company c1 is not mapped to a Procore vendor: {reason}"])

    await change(MappingChanged(**vendor, procore_id=21))
    assert await errors_of(pool) == ("todo", [])
    await change(MappingChanged(**vendor, procore_id=None))
    assert await errors_of(pool) == ("non_publishable", ["Company c1 is not mapped to a Procore vendor"])
