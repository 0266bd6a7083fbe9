"""The mapping service's subscribers (services/mapping/entrypoint.py), in memory: each message type reaches its own
typed subscriber, which runs its use case and wakes what the use case left work for; anything else is refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pydantic import BaseModel, ValidationError

from services.mapping import entrypoint, handlers, mapping_handlers
from shared.events import (
    AutoMap,
    CompleteProcoreConnection,
    ConfigureSetup,
    DisconnectProcore,
    Module,
    ProcoreEntity,
    ReferenceDeleted,
    ReferenceKind,
    ReferenceUpserted,
    SetMapping,
    SyncProcoreEntities,
    UnbindProcoreCompany,
)
from shared.topics import Topics

TOPICS = Topics("test.")
ASKED = {"requested_by": "user-1", "permissions": ["procore.setup", "procore.mapping"]}


@dataclass
class FakeInputs:
    """Records what the subscribers asked of the app, in order."""

    calls: list[tuple[str, ...]] = field(default_factory=list)

    async def command(self, cmd: Any, use_case: handlers.UseCase[Any]) -> None:
        self.calls.append(("command", cmd.type, use_case.__name__))

    async def reference(self, event: ReferenceUpserted | ReferenceDeleted) -> None:
        self.calls.append(("reference", event.type))

    def wake_sync_jobs(self) -> None:
        self.calls.append(("wake", "sync jobs"))

    def wake_webhooks(self) -> None:
        self.calls.append(("wake", "webhooks"))

    def notify_relay(self) -> None:
        self.calls.append(("notify", "relay"))


def _broker(app: FakeInputs) -> KafkaBroker:
    broker = KafkaBroker()
    broker.include_router(entrypoint.router(TOPICS, {"group_id": "test.mapping"}, lambda: app))
    return broker


CASES: list[tuple[BaseModel, str, list[tuple[str, ...]]]] = [
    (
        ConfigureSetup(account_id="a", enabled_modules=[Module.MANPOWER], **ASKED),
        TOPICS.mapping_commands,
        [("command", "setup.configure", handlers.configure_setup.__name__), ("wake", "webhooks")],
    ),
    (
        SetMapping(account_id="a", entity=ProcoreEntity.VENDOR, mobiclocks_id="c1", procore_id=7, **ASKED),
        TOPICS.mapping_commands,
        [("command", "mapping.set", mapping_handlers.set_mapping_unless_syncing.__name__), ("wake", "sync jobs")],
    ),
    (
        CompleteProcoreConnection(account_id="a", **ASKED),
        TOPICS.mapping_commands,
        [
            ("command", "procore.complete_connection", handlers.complete_procore_connection.__name__),
            ("wake", "webhooks"),
        ],
    ),
    (
        DisconnectProcore(account_id="a", **ASKED),
        TOPICS.mapping_commands,
        [("command", "procore.disconnect", handlers.disconnect_procore.__name__)],
    ),
    (
        UnbindProcoreCompany(account_id="a", procore_company_id=9, **ASKED),
        TOPICS.mapping_commands,
        [("command", "procore.unbind_company", handlers.unbind_company.__name__), ("wake", "webhooks")],
    ),
    (
        SyncProcoreEntities(account_id="a", entity=ProcoreEntity.PROJECT, **ASKED),
        TOPICS.mapping_commands,
        [("command", "mapping.sync", mapping_handlers.queue_sync.__name__), ("wake", "sync jobs")],
    ),
    (
        AutoMap(account_id="a", entity=ProcoreEntity.PROJECT, **ASKED),
        TOPICS.mapping_commands,
        [("command", "mapping.auto_map", mapping_handlers.auto_map_unless_syncing.__name__), ("wake", "sync jobs")],
    ),
    (
        ReferenceUpserted(account_id="a", kind=ReferenceKind.JOB_SITE, entity_id="j1", name="Tower A"),
        TOPICS.reference,
        [("reference", "reference.upserted")],
    ),
    (
        ReferenceDeleted(account_id="a", kind=ReferenceKind.JOB_SITE, entity_id="j1"),
        TOPICS.reference,
        [("reference", "reference.deleted")],
    ),
]


@pytest.mark.parametrize(("message", "topic", "expected"), CASES, ids=[type(c[0]).__name__ for c in CASES])
async def test_each_message_runs_its_own_use_case_then_wakes_what_it_left_work_for(
    message: BaseModel, topic: str, expected: list[tuple[str, ...]]
) -> None:
    app = FakeInputs()
    async with TestKafkaBroker(_broker(app)) as broker:
        await broker.publish(message.model_dump(mode="json"), topic, key=b"a")
    assert app.calls == [*expected, ("notify", "relay")]


async def test_a_message_of_no_known_type_is_refused_and_runs_nothing() -> None:
    app = FakeInputs()
    async with TestKafkaBroker(_broker(app)) as broker:
        with pytest.raises(ValidationError, match="does not match any of the expected tags"):
            await broker.publish({"type": "mapping.unknown", "account_id": "a"}, TOPICS.mapping_commands, key=b"a")
    assert app.calls == []


async def test_a_known_type_with_a_bad_field_is_refused_by_its_own_subscriber() -> None:
    app = FakeInputs()
    bad = {**DisconnectProcore(account_id="a", **ASKED).model_dump(mode="json"), "unexpected": 1}
    async with TestKafkaBroker(_broker(app)) as broker:
        with pytest.raises(ValidationError, match="unexpected"):
            await broker.publish(bad, TOPICS.mapping_commands, key=b"a")
    assert app.calls == []
