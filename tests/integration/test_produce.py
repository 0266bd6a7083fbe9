"""`python -m shared.produce`: MobiClocks core's events from JSON lines onto the real broker, keyed as core does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.topics import Topics
from tests.support.kafka import consume

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run_produce(kafka: str, prefix: str, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "TOPIC_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "shared.produce", *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def timelog(timelog_id: str, **extra: object) -> str:
    return json.dumps(
        {
            "type": "timelog.upserted",
            "account_id": "acct",
            "timelog_id": timelog_id,
            "revision": 1,
            "employee_id": "emp-1",
            "company_id": "co-1",
            "job_site_id": "site-1",
            "work_date": "2026-11-18",
            "duration_seconds": 3600,
            "pay_id": "REG",
            **extra,
        }
    )


async def test_timelogs_from_json_lines_arrive_keyed_by_account_and_job_site(kafka_bootstrap: str, unique: str) -> None:
    topics = Topics(f"{unique}.")
    deleted = json.dumps(
        {"type": "timelog.deleted", "account_id": "acct", "timelog_id": "tl-1", "revision": 2, "job_site_id": "site-1"}
    )
    done = run_produce(kafka_bootstrap, f"{unique}.", "timelogs", stdin=f"{timelog('tl-1')}\n\n{deleted}\n")
    assert done.returncode == 0, done.stderr
    assert f"sent 2 events to {topics.timelogs}" in done.stdout
    records = await consume(kafka_bootstrap, topics.timelogs, 2)
    assert [r.key for r in records] == [b"acct:site-1", b"acct:site-1"]
    assert [json.loads(r.value)["type"] for r in records] == ["timelog.upserted", "timelog.deleted"]
    assert "job_site_id" not in json.loads(records[1].value)


def test_one_invalid_line_sends_nothing_and_names_the_line(kafka_bootstrap: str, unique: str) -> None:
    lines = f"{timelog('tl-1')}\n{timelog('tl-2', duration_seconds='many')}\nnot json\n"
    done = run_produce(kafka_bootstrap, f"{unique}.", "timelogs", stdin=lines)
    assert done.returncode == 2
    assert "line 2: " in done.stderr
    assert "duration_seconds" in done.stderr
    assert "line 3: not JSON" in done.stderr
    assert "sent" not in done.stdout
