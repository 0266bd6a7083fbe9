"""Aggregator against the real broker and PostgreSQL: events in, entries and statuses out, dead letters."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

from shared.broker import REASON_HEADER
from shared.events import Module, SetupChanged, TimelogDeleted, TimelogUpserted
from tests.support.kafka import consume, eventually, produce
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 20)


def timelog(tid: str, rev: int, site: str = "s1", hours: int = 8, emp: str = "e1") -> TimelogUpserted:
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


async def entries(dsn: str, schema: str) -> list[dict[str, object]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f'SELECT module, job_site_id, status, content::text AS content FROM "{schema}".entries'
            " ORDER BY module, job_site_id"
        )
        return [dict(r) for r in rows]
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await conn.close()


async def test_events_become_entries_and_bad_events_are_dead_lettered(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas)
    topics = cfg.topics
    async with running(cfg, which=("aggregator",)):
        await produce(
            kafka_bootstrap,
            topics.mapping_changes,
            [SetupChanged(account_id="acc", procore_company_id=1, enabled_modules=[Module.MANPOWER], two_way=False)],
        )
        await produce(
            kafka_bootstrap,
            topics.timelogs,
            [
                b"this is not json",
                b'{"type": "timelog.upserted", "account_id": "acc", "timelog_id": "x"}',
                timelog("t1", 1),
                timelog("t2", 1, emp="e2", hours=4),
                timelog("t1", 1, hours=99),  # duplicate revision: ignored
                timelog("t2", 2, site="s2", emp="e2", hours=4),  # moved to another job site
                TimelogDeleted(account_id="acc", timelog_id="t1", revision=2),
                timelog("t1", 1, hours=50),  # stale after the delete: ignored
                timelog("t3", 1),
            ],
            key=b"acc",
        )

        def settled(rows: list[dict[str, object]]) -> bool:
            return [r["job_site_id"] for r in rows] == ["s1", "s2"] and '"8.00"' in str(rows[0]["content"])

        rows = await eventually(lambda: entries(postgres_dsn, schemas["aggregator"]), settled, what="entries")
        assert rows[0]["content"] == '{"manpower": "1", "total_hours": "8.00", "average_hours": "8.00"}'
        assert rows[1]["content"] == '{"manpower": "1", "total_hours": "4.00", "average_hours": "4.00"}'
        assert {r["status"] for r in rows} == {"non_publishable"}

        dead = await consume(kafka_bootstrap, topics.dead_letter("aggregator"), 2)
        reasons = [dict(r.headers)[REASON_HEADER].decode() for r in dead]
        assert reasons[0].startswith("message is not valid JSON")
        assert "revision: Field required" in reasons[1]
        assert dead[0].value == b"this is not json"
        assert dict(dead[0].headers)["x-dead-letter-source-topic"].decode() == topics.timelogs
