"""An entry never stays Publishing: with no publisher to answer, the aggregator's sweeper re-sends the
identical request; once a publisher runs, it takes the request (and every copy of it) once, Procore holds
one record, and the entry ends Published.

Real broker, real PostgreSQL, the real publisher and the Procore sandbox over HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date

import asyncpg
import pytest
from faststream.asgi import AsgiFastStream

from services.aggregator.bootstrap import build_app as build_aggregator
from services.aggregator.config import AggregatorSettings
from services.publisher.bootstrap import build_app as build_publisher
from services.publisher.config import PublisherSettings
from shared.broker import ensure_topics
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
from tests.support.entries import records_of, send_keyed
from tests.support.kafka import eventually
from tests.support.principals import TEST_BACKEND
from tests.support.publisher import Sandbox
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 20)


@asynccontextmanager
async def started(app: AsgiFastStream) -> AsyncIterator[None]:
    async with app.start_lifespan_context():
        yield


async def entry_state(dsn: str, schema: str) -> tuple[str, int] | None:
    """(status, re-drives in the history) of the one manpower entry."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            f"""SELECT e.status, (SELECT count(*) FROM "{schema}".publish_history h
                                   WHERE h.entry_id = e.entry_id AND h.action = 're-driven') AS redrives
                  FROM "{schema}".entries e WHERE e.module = 'manpower'"""
        )
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    return None if row is None else (row["status"], row["redrives"])


async def test_a_request_nobody_answers_is_re_driven_until_a_publisher_does(
    kafka_bootstrap: str, postgres_dsn: str, procore_sandbox_url: str, unique: str, schemas: dict[str, str]
) -> None:
    sandbox = Sandbox(procore_sandbox_url)
    company = await sandbox.company()
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=procore_sandbox_url)
    topics = cfg.topics
    account = f"acc-{uuid.uuid4().hex[:6]}"
    aggregator = build_aggregator(
        AggregatorSettings(
            **cfg.common("aggregator"),
            outbox_poll_interval_s=0.2,
            publish_redrive_after_s=1.0,
            publish_redrive_max_interval_s=2.0,
            publish_sweep_interval_s=0.2,
        )
    )
    publisher = build_publisher(PublisherSettings(**cfg.common("publisher"), **cfg.procore()))
    await ensure_topics(kafka_bootstrap, topics.all())
    await send_keyed(
        kafka_bootstrap,
        topics.mapping_changes,
        [
            SetupChanged(
                account_id=account, procore_company_id=company.id, enabled_modules=[Module.MANPOWER], two_way=False
            ),
            MappingChanged(
                account_id=account, entity=ProcoreEntity.PROJECT, mobiclocks_id="site-1", procore_id=company.project
            ),
            MappingChanged(
                account_id=account, entity=ProcoreEntity.VENDOR, mobiclocks_id="co-1", procore_id=company.vendor
            ),
        ],
    )
    timelog = TimelogUpserted(
        account_id=account,
        timelog_id="tl-1",
        revision=1,
        employee_id="emp-1",
        company_id="co-1",
        crew_tag="Framers",
        job_site_id="site-1",
        work_date=DAY,
        duration_seconds=8 * 3600,
        pay_id="REG",
    )
    schema = schemas["aggregator"]
    try:
        async with started(aggregator):
            await send_keyed(kafka_bootstrap, topics.timelogs, [timelog])
            await eventually(lambda: entry_state(postgres_dsn, schema), lambda s: s == ("todo", 0), what="To do")
            publish = PublishEntries(
                account_id=account,
                module=Module.MANPOWER,
                action=PublishAction.PUBLISH,
                scope=CellScope(job_site_id="site-1", work_date=DAY),
                **TEST_BACKEND.requester(),
            )
            await send_keyed(kafka_bootstrap, topics.publish_commands, [publish])
            # no publisher: the request is never answered, so it is sent again (twice here), unchanged
            await eventually(
                lambda: entry_state(postgres_dsn, schema),
                lambda s: s is not None and s[0] == "publishing" and s[1] >= 2,
                timeout_s=30,
                what="re-drives",
            )
            sent = await records_of(kafka_bootstrap, topics.publish_requests, 1)
            assert len(sent) >= 3, "the identical request, again and again"
            assert len({r.value for r in sent}) == 1, "the identical request, again and again"
            assert PublishToProcore.model_validate_json(sent[0].value).account_id == account

            async with started(publisher):
                await eventually(
                    lambda: entry_state(postgres_dsn, schema),
                    lambda s: s is not None and s[0] == "published",
                    timeout_s=60,
                    what="Published",
                )
                records = await sandbox.records(Module.MANPOWER, company)
                assert len(records) == 1
                assert records[0]["num_workers"] == 1
                # re-drives stop once the result is in; anything still in flight is answered from the attempt log
                state = await entry_state(postgres_dsn, schema)
                await records_of(kafka_bootstrap, topics.publish_results, 2)
                assert await entry_state(postgres_dsn, schema) == state
            assert len(await sandbox.records(Module.MANPOWER, company)) == 1
    finally:
        await sandbox.aclose()
