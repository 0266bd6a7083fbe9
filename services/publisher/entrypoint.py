"""The publisher's Kafka entry point: its one subscriber, on a router.

The publisher consumes one message type, `PublishToProcore` on `procore.publish-requests`, in batches (one
transaction stores a batch in the attempt log; the workers send them). The subscriber hands the batch to
`handlers.accept_records` and wakes whom the batch left work for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from opentelemetry.trace import Tracer

from services.publisher import handlers
from shared.broker import DeadLetters
from shared.subscribers import batch_subscriber
from shared.telemetry import span_per_record
from shared.topics import Topics


class Inputs(Protocol):
    """What the subscriber hands each batch to, and whom it wakes afterwards (the started app)."""

    @property
    def attempts(self) -> handlers.Attempts: ...

    def wake_worker(self, company_id: int) -> None:
        """A request of this company was stored: its worker looks for it now."""

    def wake_relay(self) -> None:
        """Results may have been queued: the outbox relay sends them now."""


def router(
    topics: Topics,
    consumer_options: dict[str, Any],
    batch: tuple[int, int],
    tracer: Tracer,
    dead_letters: DeadLetters,
    inputs: Callable[[], Inputs],
) -> KafkaRouter:
    """The subscriber for these topics and consumer group; `batch` is (max records, timeout ms); `inputs` gives
    the started app."""
    kafka = KafkaRouter()

    @batch_subscriber(
        kafka,
        topics.publish_requests,
        consumer_options,
        batch,
        (
            "Publish requests from the aggregator (PublishToProcore, JSON), in batches: each stored once in the"
            " attempt log, then sent to Procore by the instance holding its company's lease."
        ),
    )
    async def on_publish_requests(bodies: list[bytes], message: KafkaMessage) -> None:
        app = inputs()
        # Named like FastStream's own consumer span: one per request, in the request's trace.
        with span_per_record(tracer, f"{topics.publish_requests} process", message.raw_message):
            again = await handlers.accept_records(message.raw_message, app.attempts, app.wake_worker, dead_letters)
        if again:
            app.wake_relay()

    return kafka
