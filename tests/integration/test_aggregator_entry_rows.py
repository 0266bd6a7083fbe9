"""New entries' identity columns (job site, day, dims, key, id) are what their `EntryRef` says, whatever the ids hold:
the insert reads job site, day and dims from the entry's key in SQL, and the id is `uuid.uuid5` of the key."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from services.aggregator import domain, handlers
from services.aggregator.adapters.store import Store
from shared import db
from shared.events import Module, Quantity, SetupChanged, TimelogUpserted
from tests.support.database import migrated, provisioned

pytestmark = pytest.mark.integration
ACCOUNT = 'acc "quoted" \\ back'
ODD_IDS = ["plain", 'with "quotes"', "back\\slash", "ünïcode ☃", "comma, {brace}", "null", "NULL", "[1,2]"]


@pytest.fixture(scope="module")
async def pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with provisioned(postgres_dsn, f"rows_{uuid.uuid4().hex[:8]}_") as database:
        await migrated(database, "aggregator")
        p = await db.create_pool(database.dsn("aggregator"), database.schema("aggregator"), max_size=2)
        yield p
        await p.close()


def _events() -> list[TimelogUpserted]:
    out = []
    for i, odd in enumerate(ODD_IDS):
        out.append(
            TimelogUpserted(
                account_id=ACCOUNT,
                timelog_id=f"t{i}",
                revision=1,
                employee_id=odd,
                company_id=odd,
                crew_tag=None if i % 2 else odd,
                job_site_id=odd,
                work_date=date(2026, 3, 2 + i),
                duration_seconds=3600 + i,
                cost_code_id=None if i % 3 == 0 else odd,
                pay_class_id=None if i % 2 == 0 else odd,
                pay_id=odd,
                quantities=[Quantity(cost_code_id=odd, unit_of_measure=odd, units=i + 1)],
            )
        )
    return out


async def test_new_entries_identity_columns_follow_their_ref(pool: asyncpg.Pool) -> None:
    events = _events()
    async with pool.acquire() as conn, conn.transaction():
        await handlers.apply_mapping_change(
            Store(conn),
            SetupChanged(account_id=ACCOUNT, procore_company_id=7, enabled_modules=list(Module), two_way=False),
        )
        await handlers.apply_timelog_events(Store(conn), events)
    expected = {}
    for e in events:
        for ref, *_ in domain.contributions(handlers.to_timelog(e), list(Module)):
            name = f"{ACCOUNT}\x1f{ref.module.value}\x1f{ref.key}"
            expected[uuid.uuid5(domain.ENTRY_NAMESPACE, name)] = ref
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT entry_id, module, job_site_id, work_date, entry_key, dims::text FROM entries")
    assert {r["entry_id"] for r in rows} == set(expected)
    for r in rows:
        ref = expected[r["entry_id"]]
        assert (r["module"], r["job_site_id"], r["work_date"], r["entry_key"]) == (
            ref.module.value,
            ref.job_site_id,
            ref.work_date,
            ref.key,
        )
        assert json.loads(r["dims"]) == ref.dims_dict()
