"""The aggregator's Kafka entry point: one typed subscriber per message it consumes, on a router.

Timelog upserts and deletes are consumed in batches (group `aggregator`): a batch is applied in one transaction,
whatever its types, so one handler takes the batch. Everything else — reference names, setup and mapping changes,
Procore record changes, publish commands and results — is read by one consumer in the group `aggregator.control`
(one member per instance, so each topic's messages stay in order whatever their type), whose handlers are chosen
by the message's `type`. Each handler parses its own message and calls one use case in one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Protocol, TypeVar

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.trace import Tracer
from pydantic import Field, TypeAdapter

from services.aggregator import handlers
from services.aggregator.adapters.store import Store
from shared.events import (
    MappingChanged,
    ProcorePublishFinished,
    ProcoreRecordChanged,
    PublishEntries,
    ReferenceDeleted,
    ReferenceUpserted,
    SetupChanged,
)
from shared.subscribers import batch_subscriber, carrying, refuse_unreadable
from shared.telemetry import span_per_record
from shared.topics import Topics

_READABLE: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        ReferenceUpserted
        | ReferenceDeleted
        | SetupChanged
        | MappingChanged
        | ProcoreRecordChanged
        | PublishEntries
        | ProcorePublishFinished,
        Field(discriminator="type"),
    ]
)
"""Every message the control subscribers take: what a message none of them takes is checked against, for its
error."""


E = TypeVar("E")
UseCase = Callable[[Store, E], Awaitable[object]]
"""A use case of one control message: it works on the aggregator's tables through a store, in one transaction."""


class Inputs(Protocol):
    """What the subscribers hand each message to, and whom they wake afterwards (the started app; a fake in the
    unit tests)."""

    async def apply_timelogs(self, records: Sequence[Any]) -> None:
        """Apply a batch of timelog records in one transaction (`handlers.apply_timelog_records`); what cannot be
        read is dead-lettered, one record at a time."""

    async def run(self, use_case: UseCase[E], event: E, *, traced: bool = False) -> None:
        """Run `use_case` on a store in one transaction (`traced`: the rows it writes carry the trace id)."""

    def wake_relay(self) -> None:
        """Publish requests were queued: the outbox relay sends them now."""


def router(
    topics: Topics,
    consumer_options: dict[str, Any],
    batch: tuple[int, int],
    tracer: Tracer,
    redrive: handlers.RedrivePolicy,
    inputs: Callable[[], Inputs],
) -> KafkaRouter:
    """The subscribers for these topics and consumer groups; `batch` is the timelog batches' (max records, timeout
    ms), `redrive` when a publish request without a result is sent again; `inputs` gives the started app."""
    kafka = KafkaRouter()

    async def publish(store: Store, command: PublishEntries) -> None:
        """`handlers.publish_entries` with this service's topics and re-drive policy."""
        await handlers.publish_entries(store, command, topics, redrive)

    @batch_subscriber(
        kafka,
        topics.timelogs,
        consumer_options,
        batch,
        (
            "Timelog upserts and deletes from MobiClocks core (TimelogUpserted | TimelogDeleted, JSON), consumed"
            " in batches: stored, then the entries they touch recomputed in one transaction per batch."
        ),
    )
    async def on_timelogs_changed(bodies: list[bytes], message: KafkaMessage) -> None:
        # A span per record keeps each producer's trace whole; a record that comes without a trace context has
        # no trace to keep (the batch's span covers it), and a root span per event cost more than applying it.
        traced = [r for r in message.raw_message if any(k == "traceparent" for k, _ in r.headers or ())]
        with span_per_record(tracer, "aggregate timelog", traced):
            await inputs().apply_timelogs(message.raw_message)

    control = kafka.subscriber(
        topics.reference,
        topics.mapping_changes,
        topics.publish_commands,
        topics.publish_results,
        **{**consumer_options, "group_id": f"{consumer_options['group_id']}.control"},
        title="on_names_mappings_and_publishing",
        description="Reference names, setup and mapping changes, Procore record changes, publish commands and "
        "publish results.",
    )
    # Nothing here catches: a transient error (the database away) propagates and the consumer retries.

    @control(filter=carrying(ReferenceUpserted))
    async def on_reference_upserted(event: ReferenceUpserted) -> None:
        """A MobiClocks name (job site, company, cost code, …) for error messages and the grid."""
        await inputs().run(handlers.apply_reference_event, event)

    @control(filter=carrying(ReferenceDeleted))
    async def on_reference_deleted(event: ReferenceDeleted) -> None:
        """A MobiClocks name deleted."""
        await inputs().run(handlers.apply_reference_event, event)

    @control(filter=carrying(SetupChanged))
    async def on_setup_changed(event: SetupChanged) -> None:
        """The account's setup: kept; enabling or disabling a module recomputes the account, a new Procore company
        marks every entry for the remapper."""
        await inputs().run(handlers.record_mapping_change, event)

    @control(filter=carrying(MappingChanged))
    async def on_mapping_changed(event: MappingChanged) -> None:
        """A mapping made, changed or cleared: kept, and the entries it affects marked for the debounced remap."""
        await inputs().run(handlers.record_mapping_change, event)

    @control(filter=carrying(ProcoreRecordChanged))
    async def on_procore_record_changed(event: ProcoreRecordChanged) -> None:
        """A Procore user changed or deleted a record an entry was published to."""
        await inputs().run(handlers.apply_record_changed, event)

    @control(filter=carrying(PublishEntries))
    async def on_publish_entries(command: PublishEntries) -> None:
        """A user's publish, republish or force publish: entries turn Publishing, requests go to the outbox (their
        publish-history rows carry the trace id)."""
        app = inputs()
        await app.run(publish, command, traced=True)
        app.wake_relay()

    @control(filter=carrying(ProcorePublishFinished))
    async def on_publish_finished(event: ProcorePublishFinished) -> None:
        """The publisher's result: entries turn Published or Failed (with the reason; history rows carry the trace
        id)."""
        await inputs().run(handlers.apply_publish_result, event, traced=True)

    @control
    async def on_unreadable_message(body: Any) -> None:
        """Anything else: refused as unreadable (dead-lettered, as a message no model accepts)."""
        refuse_unreadable(_READABLE, body)

    return kafka
