"""Every consumer dead-letters what it cannot parse, with the reason, and goes on (real broker)."""

from __future__ import annotations

import json
import uuid
from datetime import date

import pytest

from shared.broker import REASON_HEADER
from shared.events import ConfigureSetup, Module, ProcoreOperation, PublishToProcore
from tests.support.kafka import consume, produce
from tests.support.principals import TEST_BACKEND
from tests.support.stack import StackConfig, running

pytestmark = pytest.mark.integration


async def test_publisher_dead_letters_and_continues(
    kafka_bootstrap: str, postgres_dsn: str, procore_sandbox_url: str, unique: str, schemas: dict[str, str]
) -> None:
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=procore_sandbox_url)
    topics = cfg.topics
    good = PublishToProcore(
        account_id="acc", entry_id=uuid.uuid4(), entry_version=1, module=Module.MANPOWER,
        operation=ProcoreOperation.CREATE, procore_company_id=999_999, procore_project_id=1,
        work_date=date(2026, 11, 20), payload={"num_workers": 1}, marker="[mc:test]",
    )  # fmt: skip
    bad_update = json.loads(good.model_dump_json()) | {"operation": "update", "request_id": str(uuid.uuid4())}
    async with running(cfg, which=("publisher",)):
        await produce(kafka_bootstrap, topics.publish_requests, [b"{", json.dumps(bad_update).encode(), good])
        dead = await consume(kafka_bootstrap, topics.dead_letter("publisher"), 2)
        results = await consume(kafka_bootstrap, topics.publish_results, 1)
    reasons = [dict(r.headers)[REASON_HEADER].decode() for r in dead]
    assert reasons[0].startswith("message is not valid JSON")
    assert "operation update needs procore_id" in reasons[1]
    result = json.loads(results[0].value)
    assert result["request_id"] == str(good.request_id)
    assert result["outcome"] == "failed" and "not connected" in result["message"].lower()


async def test_mapping_dead_letters_and_continues(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas)
    topics = cfg.topics
    setup = ConfigureSetup(
        account_id="acc", procore_company_id=None, enabled_modules=[Module.TIMECARD], **TEST_BACKEND.requester()
    )
    async with running(cfg, which=("mapping",)):
        await produce(
            kafka_bootstrap,
            topics.mapping_commands,
            [b'{"type": "setup.configure", "account_id": "acc", "enabled_modules": ["payroll"]}', setup],
        )
        dead = await consume(kafka_bootstrap, topics.dead_letter("mapping"), 1)
        changes = await consume(kafka_bootstrap, topics.mapping_changes, 1)
    reason = dict(dead[0].headers)[REASON_HEADER].decode()
    assert "enabled_modules.0" in reason and "requested_by: Field required" in reason
    change = json.loads(changes[0].value)
    assert change["type"] == "setup.changed" and change["enabled_modules"] == ["timecard"]
