"""A publisher process killed with SIGKILL after Procore created the record, before it recorded that.

The sandbox creates the record and drops the connection (`fail_after_commit`); the publisher
then lists the day to find out, and that list is slowed down (`latency`) so the test can kill
the process in between. The restarted process finds the unfinished attempt, finds the record
by our marker and adopts it: one record in Procore, one result emitted.

Repeated for a timecard approved in Procore in between, with Procore's project timecard list answering pending
entries only (sandbox rule): the restarted process still finds it (the company's list, by origin_id) and adopts it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.ports import free_port
from shared.broker import ensure_topics
from shared.events import Module, PublishOutcome
from shared.topics import Topics
from tests.sandbox_fixtures import run_sandbox
from tests.support.database import ProvisionedDatabase
from tests.support.publisher import Requests, Results, Sandbox, assert_match_spec, request_for, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


def start_publisher(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.publisher"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


@pytest.mark.parametrize(
    ("module", "approved_in_between", "count"),
    [
        (Module.MANPOWER, False, 1),
        (Module.TIMECARD, False, 1),
        (Module.TIMECARD, True, 1),
        (Module.TIMECARD, False, 6),
        (Module.TIMECARD, True, 6),
    ],
    ids=[
        "manpower",
        "timecard",
        "timecard-approved-in-procore-in-between",
        "bulk-timecards",
        "bulk-timecards-approved-in-procore-in-between",
    ],
)
async def test_sigkill_after_procore_created_the_record(
    kafka_bootstrap: str,
    database: ProvisionedDatabase,
    unique: str,
    schemas: dict[str, str],
    sandbox_url: str,
    tmp_path: Path,
    module: Module,
    approved_in_between: bool,
    count: int,
) -> None:
    prefix = f"{unique}."
    sandbox = Sandbox(sandbox_url)
    company = await sandbox.company()
    sent = [request_for(module, company) for _ in range(count)]  # several timecards: one bulk_create call
    kind = "manpower_logs" if module is Module.MANPOWER else "timecard_entries"
    path = f"/rest/v1.0/projects/{company.project}/{kind}"
    post_path = "*/bulk_create" if count > 1 else path
    await sandbox.fault(path=post_path, method="POST", kind="fail_after_commit", after_commit="drop")
    await sandbox.fault(path=path, method="GET", kind="latency", latency_ms=20_000)

    topics = Topics(prefix)
    await ensure_topics(kafka_bootstrap, topics.all())
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": database.dsn("publisher"),
        "TOPIC_PREFIX": prefix,
        "DB_SCHEMA": schemas["publisher"],
        "PROCORE_BASE_URL": sandbox_url,
        "PROCORE_LOGIN_URL": sandbox_url,
        "PROCORE_CLIENT_ID": "sandbox-client",
        "PROCORE_CLIENT_SECRET": "sandbox-secret",
        "HTTP_PORT": str(free_port()),
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "LOG_LEVEL": "INFO",
    }
    log = tmp_path / "publisher.log"
    first = start_publisher(env, log)
    try:
        async with Requests(kafka_bootstrap, topics.publish_requests) as requests:
            await requests.send(*sent)

        async def reconciling() -> bool:
            listed = [e for e in await sandbox.requests(company.id) if e["method"] == "GET"]
            return bool(listed) and len(await sandbox.records(module, company)) == count

        await wait_until(reconciling, timeout_s=40)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    created = await sandbox.records(module, company)
    assert len(created) == count
    await sandbox.clear_faults()
    if approved_in_between:
        for record in created:
            await sandbox.edit(module, record["id"], {"approval_status": "approved"})
        rules = {"pending_only_timecard_list": True}
        (await sandbox.http.put(f"/_sandbox/rules/companies/{company.id}", json=rules)).raise_for_status()
        listed = await sandbox.http.get(f"/_sandbox/records/timecard_entries?company_id={company.id}")
        assert {r["approval_status"] for r in listed.json()} == {"approved"}

    second = start_publisher(env, log)
    try:
        async with Results(kafka_bootstrap, topics.publish_results) as results:
            finished = [await results.wait(r.request_id, timeout_s=60) for r in sent]
            await results.settle(2.0)
            for r in sent:
                assert len(results.by_request[r.request_id]) == 1, log.read_text()[-3000:]
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()

    assert {f.outcome for f in finished} == {PublishOutcome.PUBLISHED}, [f.message for f in finished]
    assert sorted(f.procore_id or 0 for f in finished) == sorted(r["id"] for r in created)
    assert sorted(r["id"] for r in await sandbox.records(module, company)) == sorted(r["id"] for r in created)
    posts = [e for e in await sandbox.requests(company.id) if e["method"] == "POST"]
    assert len(posts) == 1  # no second record, no second call
    assert_match_spec(await sandbox.requests())
    await sandbox.aclose()
