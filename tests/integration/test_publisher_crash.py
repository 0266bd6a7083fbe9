"""A publisher process killed with SIGKILL after Procore created the record, before it recorded that.

The sandbox creates the record and drops the connection (`fail_after_commit`); the publisher
then lists the day to find out, and that list is slowed down (`latency`) so the test can kill
the process in between. The restarted process finds the unfinished attempt, finds the record
by our marker and adopts it: one record in Procore, one result emitted.
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


@pytest.mark.parametrize("module", [Module.MANPOWER, Module.TIMECARD])
async def test_sigkill_after_procore_created_the_record(
    kafka_bootstrap: str,
    database: ProvisionedDatabase,
    unique: str,
    schemas: dict[str, str],
    sandbox_url: str,
    tmp_path: Path,
    module: Module,
) -> None:
    prefix = f"{unique}."
    sandbox = Sandbox(sandbox_url)
    company = await sandbox.company()
    request = request_for(module, company)
    kind = "manpower_logs" if module is Module.MANPOWER else "timecard_entries"
    path = f"/rest/v1.0/projects/{company.project}/{kind}"
    await sandbox.fault(path=path, method="POST", kind="fail_after_commit", after_commit="drop")
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
            await requests.send(request)

        async def reconciling() -> bool:
            listed = [e for e in await sandbox.requests(company.id) if e["method"] == "GET"]
            return bool(listed) and len(await sandbox.records(module, company)) == 1

        await wait_until(reconciling, timeout_s=40)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
    (record,) = await sandbox.records(module, company)
    await sandbox.clear_faults()

    second = start_publisher(env, log)
    try:
        async with Results(kafka_bootstrap, topics.publish_results) as results:
            result = await results.wait(request.request_id, timeout_s=60)
            await results.settle(2.0)
            assert len(results.by_request[request.request_id]) == 1, log.read_text()[-3000:]
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()

    assert result.outcome is PublishOutcome.PUBLISHED, result.message
    assert result.procore_id == record["id"]
    assert [r["id"] for r in await sandbox.records(module, company)] == [record["id"]]  # no second record
    posts = [e for e in await sandbox.requests(company.id) if e["method"] == "POST"]
    assert len(posts) == 1
    assert_match_spec(await sandbox.requests())
    await sandbox.aclose()
