"""The mapping service's Kafka entry point: one typed subscriber per message it consumes, on a router.

Commands (`mapping.commands`) and reference events (`mobiclocks.reference`) are read by one consumer in the group
`mapping` (as before: one member per instance), whose handlers are chosen by the message's `type`. Each subscriber
parses its own message, calls one use case and wakes what the use case left work for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol, TypeVar

from faststream.kafka import KafkaRouter
from pydantic import Field, TypeAdapter

from services.mapping import handlers, mapping_handlers
from shared.events import (
    AutoMap,
    CompleteProcoreConnection,
    ConfigureSetup,
    DisconnectProcore,
    ReferenceDeleted,
    ReferenceUpserted,
    SetMapping,
    SyncProcoreEntities,
    UnbindProcoreCompany,
)
from shared.subscribers import carrying, refuse_unreadable
from shared.topics import Topics

C = TypeVar("C", bound=handlers.Command)

_READABLE: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        ConfigureSetup
        | SetMapping
        | CompleteProcoreConnection
        | DisconnectProcore
        | UnbindProcoreCompany
        | SyncProcoreEntities
        | AutoMap
        | ReferenceUpserted
        | ReferenceDeleted,
        Field(discriminator="type"),
    ]
)
"""Every message the subscribers take: what a message none of them takes is checked against, for its error."""


class Inputs(Protocol):
    """What the subscribers hand each message to, and whom they wake afterwards (the started app; a fake in the
    unit tests)."""

    async def command(self, cmd: C, use_case: handlers.UseCase[C]) -> None:
        """Run one command's use case at most once in effect (`handlers.handle_command`)."""

    async def reference(self, event: ReferenceUpserted | ReferenceDeleted) -> None:
        """Store a MobiClocks reference entity (`reference_events.apply_reference_event`)."""

    def wake_sync_jobs(self) -> None:
        """A job was queued: the runner claims it now rather than at its next poll."""

    def wake_webhooks(self) -> None:
        """A company was chosen or dropped: its hook is registered or deleted now."""

    def notify_relay(self) -> None:
        """Changes may have been queued: the outbox relay sends them now."""


def router(topics: Topics, consumer_options: dict[str, Any], inputs: Callable[[], Inputs]) -> KafkaRouter:
    """The subscribers, for the topics and consumer group of these settings; `inputs` gives the started app."""
    kafka = KafkaRouter()
    subscriber = kafka.subscriber(
        topics.mapping_commands,
        topics.reference,
        **consumer_options,
        title="on_command_or_reference",
        description="Setup, connection, sync, auto-map and mapping commands from the gateway (checked against "
        "the requester's permissions here); reference entities from MobiClocks core.",
    )

    async def command(
        cmd: C, use_case: handlers.UseCase[C], *, wake_sync_jobs: bool = False, wake_webhooks: bool = False
    ) -> None:
        app = inputs()
        await app.command(cmd, use_case)
        if wake_sync_jobs:
            app.wake_sync_jobs()  # queued: a background job runs it (the consumer goes on)
        if wake_webhooks:
            app.wake_webhooks()
        app.notify_relay()

    async def reference(event: ReferenceUpserted | ReferenceDeleted) -> None:
        app = inputs()
        await app.reference(event)
        app.notify_relay()

    @subscriber(filter=carrying(ConfigureSetup))
    async def on_configure_setup(cmd: ConfigureSetup) -> None:
        """Save the account's setup (modules, two-way, company)."""
        await command(cmd, handlers.configure_setup, wake_webhooks=True)

    @subscriber(filter=carrying(SetMapping))
    async def on_set_mapping(cmd: SetMapping) -> None:
        """Map one MobiClocks row to a Procore entity, or clear it."""
        await command(cmd, mapping_handlers.set_mapping_unless_syncing, wake_sync_jobs=True)

    @subscriber(filter=carrying(CompleteProcoreConnection))
    async def on_complete_procore_connection(cmd: CompleteProcoreConnection) -> None:
        """Prove and bind the companies a new Procore link reaches (queued by this service)."""
        await command(cmd, handlers.complete_procore_connection, wake_webhooks=True)

    @subscriber(filter=carrying(DisconnectProcore))
    async def on_disconnect_procore(cmd: DisconnectProcore) -> None:
        """Revoke and forget the account's Procore tokens."""
        await command(cmd, handlers.disconnect_procore)

    @subscriber(filter=carrying(UnbindProcoreCompany))
    async def on_unbind_procore_company(cmd: UnbindProcoreCompany) -> None:
        """Release one of the account's Procore companies."""
        await command(cmd, handlers.unbind_company, wake_webhooks=True)

    @subscriber(filter=carrying(SyncProcoreEntities))
    async def on_sync_procore_entities(cmd: SyncProcoreEntities) -> None:
        """Queue a sync of one tab's Procore list."""
        await command(cmd, mapping_handlers.queue_sync, wake_sync_jobs=True)

    @subscriber(filter=carrying(AutoMap))
    async def on_auto_map(cmd: AutoMap) -> None:
        """Map one tab's rows whose Number matches one Procore entity."""
        await command(cmd, mapping_handlers.auto_map_unless_syncing, wake_sync_jobs=True)

    @subscriber(filter=carrying(ReferenceUpserted))
    async def on_reference_upserted(event: ReferenceUpserted) -> None:
        """A MobiClocks reference entity created or changed."""
        await reference(event)

    @subscriber(filter=carrying(ReferenceDeleted))
    async def on_reference_deleted(event: ReferenceDeleted) -> None:
        """A MobiClocks reference entity deleted."""
        await reference(event)

    @subscriber
    async def on_unreadable_message(body: Any) -> None:
        """Anything else: refused as unreadable (dead-lettered, as a message no model accepts)."""
        refuse_unreadable(_READABLE, body)  # raises the validation error the dead-letter middleware acts on

    return kafka
