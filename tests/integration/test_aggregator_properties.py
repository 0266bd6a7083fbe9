"""Property: whatever the order, duplication and batching of timelog events, the stored entries
equal a from-scratch recompute of the final timelogs, and statuses follow the state machine.

Runs the real handlers against real PostgreSQL. Publishing happens at a random point through
the real publish-command path (outbox) and publish results, so the statuses after it are
checked too: Published when content is back to what was published, Updated when it differs,
Deleted when a timelog the entry was published with is gone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.aggregator import domain, handlers
from services.aggregator.adapters.store import Store
from shared import db
from shared.events import (
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
from tests.support.database import migrated, provisioned
from tests.support.principals import TEST_BACKEND

pytestmark = pytest.mark.integration
ACCOUNT = "prop"
DAY = date(2026, 3, 2)
SITES = ["s1", "s2"]
EMPLOYEES = ["e1", "e2", "e3"]

timelog_state = st.fixed_dictionaries(
    {
        "employee_id": st.sampled_from(EMPLOYEES),
        "company_id": st.sampled_from(["c1", "c2"]),
        "crew_tag": st.sampled_from([None, "A", "B"]),
        "job_site_id": st.sampled_from(SITES),
        "work_date": st.sampled_from([DAY, DAY + timedelta(days=1)]),
        "duration_seconds": st.sampled_from([1800, 3600, 7200, 28800]),
        "cost_code_id": st.sampled_from([None, "cc1", "cc2"]),
        "pay_class_id": st.sampled_from([None, "pc1"]),
        "pay_id": st.sampled_from(["REG", "OT"]),
        "quantities": st.lists(
            st.fixed_dictionaries(
                {
                    "cost_code_id": st.sampled_from(["cc1", "cc2"]),
                    "unit_of_measure": st.just("m3"),
                    "units": st.integers(1, 5),
                }
            ),
            max_size=2,
        ),
    }
)

# One timelog's life: some revisions, possibly ending in a delete (deletes are final in MobiClocks).
history = st.tuples(st.lists(timelog_state, min_size=1, max_size=4), st.booleans())


# (batches of events, after which batch to publish, {"final": each timelog's last state, None once deleted})
Scenario = tuple[list[list[TimelogUpserted | TimelogDeleted]], int, dict[str, dict[str, TimelogUpserted | None]]]


@st.composite
def scenario(draw: st.DrawFn) -> Scenario:
    histories = draw(st.lists(history, min_size=1, max_size=6))
    events: list[TimelogUpserted | TimelogDeleted] = []
    final: dict[str, TimelogUpserted | None] = {}
    for n, (states, deleted) in enumerate(histories):
        tid = f"t{n}"
        for rev, state in enumerate(states, start=1):
            event = TimelogUpserted(account_id=ACCOUNT, timelog_id=tid, revision=rev, **state)
            events.append(event)
            final[tid] = event
        if deleted:
            events.append(TimelogDeleted(account_id=ACCOUNT, timelog_id=tid, revision=len(states) + 1))
            final[tid] = None
    # duplicates and any order
    events += draw(st.lists(st.sampled_from(events), max_size=5))
    order = draw(st.permutations(range(len(events))))
    shuffled = [events[i] for i in order]
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(shuffled) - 1)), max_size=4)))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True) if shuffled[a:b]]
    publish_after = draw(st.integers(0, len(batches)))
    return batches, publish_after, {"final": final}


@pytest.fixture(scope="module")
async def pool(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with provisioned(postgres_dsn, f"prop_{uuid.uuid4().hex[:8]}_") as database:
        await migrated(database, "aggregator")
        p = await db.create_pool(database.dsn("aggregator"), database.schema("aggregator"), max_size=2)
        yield p
        await p.close()


async def reset(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "TRUNCATE timelogs, entries, entry_members, publish_history, publish_requests, setups, mappings,"
            " reference_names, outbox"
        )
        await handlers.apply_mapping_change(
            Store(conn),
            SetupChanged(account_id=ACCOUNT, procore_company_id=7, enabled_modules=list(Module), two_way=False),
        )
        mapped: list[tuple[ProcoreEntity, str, int | None]] = [(ProcoreEntity.PROJECT, s, None) for s in SITES]
        mapped += [(ProcoreEntity.VENDOR, c, None) for c in ("c1", "c2")]
        mapped += [(ProcoreEntity.EMPLOYEE, e, None) for e in EMPLOYEES]
        mapped += [(ProcoreEntity.PAYROLL_TYPE, p, None) for p in ("REG", "OT")]
        mapped += [(ProcoreEntity.CLASSIFICATION, "pc1", None)]
        mapped += [(ProcoreEntity.COST_CODE, c, 100 + i) for i, _ in enumerate(SITES) for c in ("cc1", "cc2")]
        for i, (entity, mc_id, project) in enumerate(mapped):
            await handlers.apply_mapping_change(
                Store(conn),
                MappingChanged(
                    account_id=ACCOUNT,
                    entity=entity,
                    mobiclocks_id=mc_id,
                    procore_id=100 + i if entity is ProcoreEntity.PROJECT else 500 + i,
                    procore_project_id=project,
                ),
            )


async def publish_everything(pool: asyncpg.Pool) -> dict[uuid.UUID, tuple[str, frozenset[str]]]:
    """Publish all entries through the real command path; return what each was published with."""
    async with pool.acquire() as conn, conn.transaction():
        cmd = PublishEntries(
            account_id=ACCOUNT,
            module=Module.TIMECARD,
            action=PublishAction.PUBLISH,
            scope=DateRangeScope(date_from=DAY, date_to=DAY + timedelta(days=1)),
            **TEST_BACKEND.requester(),
        )
        for module in Module:
            await handlers.publish_entries(Store(conn), cmd.model_copy(update={"module": module}), Topics())
        requests = [
            json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
            for r in await conn.fetch("SELECT payload FROM outbox ORDER BY id")
        ]
        await conn.execute("DELETE FROM outbox")
        published: dict[uuid.UUID, tuple[str, frozenset[str]]] = {}
        for n, request in enumerate(requests):
            row = await conn.fetchrow(
                "SELECT content, publishing_timelog_ids FROM entries WHERE entry_id = $1",
                uuid.UUID(request["entry_id"]),
            )
            assert row is not None
            published[uuid.UUID(request["entry_id"])] = (
                domain.fingerprint(row["content"]),
                frozenset(row["publishing_timelog_ids"]),
            )
            result = ProcorePublishFinished(
                account_id=ACCOUNT,
                request_id=uuid.UUID(request["request_id"]),
                entry_id=uuid.UUID(request["entry_id"]),
                entry_version=request["entry_version"],
                module=Module(request["module"]),
                outcome=PublishOutcome.PUBLISHED,
                procore_id=10_000 + n,
            )
            assert await handlers.apply_publish_result(Store(conn), result)
    return published


def to_timelog(e: TimelogUpserted) -> domain.Timelog:
    return handlers.to_timelog(e)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=scenario())
async def test_entries_equal_a_recompute_whatever_the_order(pool: asyncpg.Pool, case: Scenario) -> None:
    batches, publish_after, facts = case
    final = facts["final"]
    await reset(pool)
    published: dict[uuid.UUID, tuple[str, frozenset[str]]] = {}
    for i, batch in enumerate(batches):
        if i == publish_after:
            published = await publish_everything(pool)
        async with pool.acquire() as conn, conn.transaction():
            await handlers.apply_timelog_events(Store(conn), batch)
    if publish_after == len(batches):
        published = await publish_everything(pool)

    live = [to_timelog(e) for e in final.values() if e is not None]
    expected = domain.aggregate(live, list(Module))
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT * FROM entries")
        members = await conn.fetch("SELECT * FROM entry_members")
    stored: dict[uuid.UUID, asyncpg.Record] = {r["entry_id"]: r for r in rows}
    by_entry: dict[uuid.UUID, dict[str, int]] = {}
    for m in members:
        by_entry.setdefault(m["entry_id"], {})[m["employee_id"]] = m["timelogs"]

    assert by_entry.keys() <= stored.keys(), "members of entries that do not exist"
    expected_ids = {domain.entry_id(ACCOUNT, ref.module, ref.key): (ref, t) for ref, t in expected.items()}
    deleted_ids = {tid for tid, e in final.items() if e is None}
    for entry_id, (ref, totals) in expected_ids.items():
        row = stored.get(entry_id)
        assert row is not None, f"missing entry {ref}"
        assert row["content"] == domain.content_of(ref.module, totals), ref
        assert (row["seconds"], Decimal(row["units"]), row["contributions"]) == (
            totals.seconds,
            totals.units,
            totals.contributions,
        )
        assert by_entry.get(entry_id, {}) == dict(totals.members)
    for entry_id, row in stored.items():
        if entry_id not in expected_ids:
            assert row["content"] is None, "an empty entry must be gone unless published"
            assert entry_id in published, "an empty entry must be gone unless published"

    for entry_id, row in stored.items():
        status = row["status"]
        if entry_id not in published:
            assert status == "todo", (status, row["errors"])
            continue
        fp, published_with = published[entry_id]
        if published_with & deleted_ids or row["content"] is None:
            # a timelog it was published with is gone, or nothing is left (all moved away):
            # publishing it deletes the Procore record
            assert status == "deleted"
        elif domain.fingerprint(row["content"]) == fp:
            assert status == "published"
        else:
            assert status == "updated"
