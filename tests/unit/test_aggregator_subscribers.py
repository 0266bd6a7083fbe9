"""The aggregator's subscribers (services/aggregator/entrypoint.py), in memory: each control message type reaches its
own typed subscriber, which runs its use case in a transaction and wakes what the use case left work for; a timelog
batch goes to the batch apply whole; anything else is refused."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry.trace import NoOpTracer
from pydantic import BaseModel, ValidationError

from services.aggregator import entrypoint, handlers
from shared.events import (
    CellScope,
    MappingChanged,
    Module,
    ProcoreChange,
    ProcoreEntity,
    ProcorePublishFinished,
    ProcoreRecordChanged,
    PublishAction,
    PublishEntries,
    PublishOutcome,
    ReferenceDeleted,
    ReferenceKind,
    ReferenceUpserted,
    SetupChanged,
    TimelogDeleted,
)
from shared.topics import Topics

TOPICS = Topics("test.")
DAY = date(2026, 11, 27)


@dataclass
class FakeInputs:
    """Records what the subscribers asked of the app, in order."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def apply_timelogs(self, records: Sequence[Any]) -> None:
        self.calls.append(("timelogs", len(records)))

    async def run(self, use_case: entrypoint.UseCase[Any], event: Any, *, traced: bool = False) -> None:
        self.calls.append(("run", event.type, use_case.__name__, traced))

    def wake_relay(self) -> None:
        self.calls.append(("wake", "relay"))


def _broker(app: FakeInputs) -> KafkaBroker:
    broker = KafkaBroker()
    options = {"group_id": "test.aggregator"}
    broker.include_router(
        entrypoint.router(TOPICS, options, (100, 10), NoOpTracer(), handlers.RedrivePolicy(), lambda: app)
    )
    return broker


CASES: list[tuple[BaseModel, str, list[tuple[Any, ...]]]] = [
    (
        ReferenceUpserted(account_id="a", kind=ReferenceKind.JOB_SITE, entity_id="j1", name="Tower A"),
        TOPICS.reference,
        [("run", "reference.upserted", handlers.apply_reference_event.__name__, False)],
    ),
    (
        ReferenceDeleted(account_id="a", kind=ReferenceKind.JOB_SITE, entity_id="j1"),
        TOPICS.reference,
        [("run", "reference.deleted", handlers.apply_reference_event.__name__, False)],
    ),
    (
        SetupChanged(account_id="a", procore_company_id=7, enabled_modules=[Module.MANPOWER], two_way=False),
        TOPICS.mapping_changes,
        [("run", "setup.changed", handlers.record_mapping_change.__name__, False)],
    ),
    (
        MappingChanged(account_id="a", entity=ProcoreEntity.VENDOR, mobiclocks_id="co-1", procore_id=5),
        TOPICS.mapping_changes,
        [("run", "mapping.changed", handlers.record_mapping_change.__name__, False)],
    ),
    (
        ProcoreRecordChanged(
            account_id="a", module=Module.MANPOWER, procore_company_id=7, procore_id=9, change=ProcoreChange.UPDATED
        ),
        TOPICS.mapping_changes,
        [("run", "procore.record_changed", handlers.apply_record_changed.__name__, False)],
    ),
    (
        PublishEntries(
            account_id="a",
            module=Module.MANPOWER,
            action=PublishAction.PUBLISH,
            scope=CellScope(job_site_id="j1", work_date=DAY),
            requested_by="u",
            permissions=["procore.publish"],
        ),
        TOPICS.publish_commands,
        [("run", "publish.entries", "publish", True), ("wake", "relay")],
    ),
    (
        ProcorePublishFinished(
            account_id="a",
            request_id=uuid.uuid4(),
            entry_id=uuid.uuid4(),
            entry_version=1,
            module=Module.MANPOWER,
            outcome=PublishOutcome.PUBLISHED,
            procore_id=9,
        ),
        TOPICS.publish_results,
        [("run", "procore.publish_finished", handlers.apply_publish_result.__name__, True)],
    ),
]


@pytest.mark.parametrize(("message", "topic", "expected"), CASES, ids=[type(c[0]).__name__ for c in CASES])
async def test_each_control_message_runs_its_own_use_case(
    message: BaseModel, topic: str, expected: list[tuple[Any, ...]]
) -> None:
    app = FakeInputs()
    async with TestKafkaBroker(_broker(app)) as broker:
        await broker.publish(message.model_dump(mode="json"), topic, key=b"a")
    assert app.calls == expected


async def test_a_timelog_batch_goes_to_the_batch_apply_whole() -> None:
    app = FakeInputs()
    deleted = TimelogDeleted(account_id="a", timelog_id="t1", revision=2)
    async with TestKafkaBroker(_broker(app)) as broker:
        await broker.publish_batch(deleted.model_dump(mode="json"), b"{not json", topic=TOPICS.timelogs)
    assert app.calls == [("timelogs", 2)]  # the unreadable one is the batch apply's to dead-letter


async def test_a_control_message_of_no_known_type_is_refused_and_runs_nothing() -> None:
    app = FakeInputs()
    async with TestKafkaBroker(_broker(app)) as broker:
        with pytest.raises(ValidationError, match="does not match any of the expected tags"):
            await broker.publish({"type": "publish.explode", "account_id": "a"}, TOPICS.publish_commands, key=b"a")
    assert app.calls == []


async def test_a_known_type_with_a_bad_field_is_refused_by_its_own_subscriber() -> None:
    app = FakeInputs()
    body = ReferenceDeleted(account_id="a", kind=ReferenceKind.JOB_SITE, entity_id="j1").model_dump(mode="json")
    async with TestKafkaBroker(_broker(app)) as broker:
        with pytest.raises(ValidationError, match="kind"):
            await broker.publish({**body, "kind": "planet"}, TOPICS.reference, key=b"a")
    assert app.calls == []
