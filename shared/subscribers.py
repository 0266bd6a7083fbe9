"""One typed subscriber per message type on a consumer that reads several types (FastStream subscriber filters).

A service's consumer group keeps one consumer per topic set — so a topic's messages stay in order whatever their
type — and each message type gets its own handler with its own parameter type: `@subscriber(filter=carrying(T))`.
A last handler without a filter refuses whatever none of them took (`refuse_unreadable`), so it is dead-lettered
with the validation error of the union the consumer reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka import KafkaRouter
from faststream.message import StreamMessage
from pydantic import BaseModel, TypeAdapter

from shared.broker import raw_bodies


def carrying(message: type[BaseModel]) -> Callable[[StreamMessage[Any]], Awaitable[bool]]:
    """A subscriber filter: the message's `type` is the one `message` declares."""
    kind = message.model_fields["type"].default

    async def carries(msg: StreamMessage[Any]) -> bool:
        body = await msg.decode()  # decoded once per message, whatever the number of filters
        return not msg.processed and isinstance(body, dict) and body.get("type") == kind

    return carries


def refuse_unreadable(readable: TypeAdapter[Any], body: Any) -> None:
    """Raise the validation error `readable` gives `body` (what the dead-letter middleware records as the reason);
    a body it accepts was one no handler takes, which is refused too."""
    event = readable.validate_python(body)
    raise ValueError(f"no handler takes {type(event).__name__}")


def batch_subscriber(
    router: KafkaRouter, topic: str, consumer_options: dict[str, Any], batch: tuple[int, int], description: str
) -> Any:
    """A subscriber taking `topic` in batches of raw bodies (`batch`: max records, timeout ms): its handler gets the
    bodies and the batch's message (whose `raw_message` holds the records, for dead-lettering one of them)."""
    max_records, timeout_ms = batch
    return router.subscriber(
        topic,
        **consumer_options,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=timeout_ms,
        decoder=raw_bodies,
        description=description,
    )
