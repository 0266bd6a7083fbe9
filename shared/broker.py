"""Broker factory: a FastStream KafkaBroker with tracing, dead-lettering and bounded retries.

Delivery is at-least-once: offsets are committed only after a handler returns (consumers
are idempotent). A message that cannot be parsed or validated goes to the service's
dead-letter topic with the reason in headers, and the consumer goes on. A handler that
raises anything else is retried (the offset is rewound) with backoff; after
`max_attempts` the message is dead-lettered too, so one poison message never blocks a
partition forever and never lets a later commit skip it silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from faststream import AckPolicy, BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.message import StreamMessage
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from shared.errors import InvalidMessage
from shared.topics import Topics

log = logging.getLogger(__name__)

REASON_HEADER = "x-dead-letter-reason"


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for err in error.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)[:2000]


def reason_for(error: BaseException) -> str | None:
    """The dead-letter reason for a permanent error, None when the error may be transient."""
    if isinstance(error, ValidationError):
        return f"invalid message: {describe_validation_error(error)}"
    if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
        return f"message is not valid JSON: {error}"
    if isinstance(error, InvalidMessage):
        return f"invalid message: {error}"
    return None


def json_problem(body: bytes) -> str | None:
    try:
        json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return str(error)
    return None


class DeadLetters:
    """Sends records that can never be processed to the service's dead-letter topic, with the reason."""

    def __init__(self, broker: KafkaBroker, service: str, topics: Topics) -> None:
        self._broker = broker
        self.service = service
        self.topic = topics.dead_letter(service)

    async def send(self, record: Any, reason: str, headers: dict[str, str] | None = None) -> None:
        """`record` is an aiokafka ConsumerRecord (a batch message holds several)."""
        out = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        out.update(headers or {})
        out.update(
            {
                REASON_HEADER: reason,
                "x-dead-letter-source-topic": record.topic,
                "x-dead-letter-source-partition": str(record.partition),
                "x-dead-letter-source-offset": str(record.offset),
                "x-dead-letter-service": self.service,
                "x-dead-letter-at": datetime.now(UTC).isoformat(),
            }
        )
        await self._broker.publish(record.value, topic=self.topic, key=record.key, headers=out)
        log.warning(
            "dead-lettered %s[%s]@%s to %s: %s", record.topic, record.partition, record.offset, self.topic, reason
        )


def _records(msg: StreamMessage[Any]) -> tuple[Any, ...]:
    raw = msg.raw_message
    return raw if isinstance(raw, tuple) else (raw,)


def make_dead_letter_middleware(
    dead_letters: DeadLetters,
    max_attempts: int = 5,
    base_delay_s: float = 0.2,
) -> type[BaseMiddleware]:
    attempts: dict[tuple[str, int, int], int] = {}

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(
            self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            records = _records(msg)
            first = records[0]
            position = (first.topic, first.partition, first.offset)
            try:
                result = await call_next(msg)
            except Exception as error:
                reason = reason_for(error)
                if isinstance(error, ValidationError) and len(records) == 1 and (problem := json_problem(msg.body)):
                    reason = f"message is not valid JSON: {problem}"
                if reason is None:
                    count = attempts.get(position, 0) + 1
                    if count < max_attempts:
                        attempts[position] = count
                        delay = min(base_delay_s * 2 ** (count - 1), 5.0)
                        log.warning(
                            "handler failed on %s (attempt %d/%d), retrying in %.1fs: %r",
                            position,
                            count,
                            max_attempts,
                            delay,
                            error,
                        )
                        await asyncio.sleep(delay)
                        raise
                    reason = f"handler failed {max_attempts} times: {error!r}"[:2000]
                attempts.pop(position, None)
                for record in records:
                    await dead_letters.send(record, reason)
                return None
            attempts.pop(position, None)
            return result

    return DeadLetterMiddleware


def make_broker(
    bootstrap_servers: str,
    service: str,
    topics: Topics,
    tracer_provider: TracerProvider | None = None,
    max_attempts: int = 5,
) -> KafkaBroker:
    broker = KafkaBroker(
        bootstrap_servers,
        client_id=service,
        middlewares=[KafkaTelemetryMiddleware(tracer_provider=tracer_provider)],
        description=f"{service} service",
        log_level=logging.DEBUG,  # one line per message is too much at INFO; failures still log as warnings
    )
    broker.add_middleware(make_dead_letter_middleware(DeadLetters(broker, service, topics), max_attempts=max_attempts))
    return broker


def consumer_options(
    service: str, session_timeout_ms: int = 10_000, prefix: str = "", fetch_max_wait_ms: int = 50
) -> dict[str, Any]:
    """Subscriber options for a service's consumer group: commit only after the handler succeeded.

    The group id carries the topic prefix, so systems sharing a broker never share a group."""
    return {
        "group_id": f"{prefix}{service}",
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": max(session_timeout_ms // 4, 500),
        # how long a fetch may wait for data: bounds the latency a quiet partition adds
        "fetch_max_wait_ms": fetch_max_wait_ms,
    }


async def ensure_topics(bootstrap_servers: str, names: list[str], partitions: int = 4) -> None:
    """Create missing topics before consumers subscribe (a consumer would otherwise wait for metadata)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="topic-setup")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another service created them first
                await admin.create_topics(missing)
    finally:
        await admin.close()


async def raw_bodies(msg: StreamMessage[Any]) -> Any:
    """Decoder for batch subscribers that validate each record themselves (so one bad record
    is dead-lettered alone instead of failing its whole batch)."""
    return list(msg.body) if isinstance(msg.body, list) else [msg.body]
