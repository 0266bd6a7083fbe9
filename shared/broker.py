"""Broker factory: a FastStream KafkaBroker with tracing, the consumer middleware (`shared.consumer_middleware`: how a
failing handler is retried or dead-lettered, and why), the dead-letter sender, consumer options and topic setup.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.message import StreamMessage
from opentelemetry.sdk.trace import TracerProvider

from shared import metrics
from shared.consumer_middleware import AccountLogMiddleware, make_dead_letter_middleware
from shared.dead_letters import REASON_HEADER, dead_letter_headers, record_size, reference_for, reference_headers
from shared.kafka_security import KafkaConnectionSettings, connection_of
from shared.records import describe_validation_error, json_problem, permanent_reason
from shared.settings import ConsumerSettings
from shared.topics import Topics

log = logging.getLogger(__name__)

__all__ = [
    "REASON_HEADER",
    "DeadLetters",
    "consumer_options",
    "consumer_settings_of",
    "describe_validation_error",
    "ensure_topics",
    "json_problem",
    "make_broker",
    "raw_bodies",
    "reason_for",
]

_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)

reason_for = permanent_reason
"""The dead-letter reason for a permanent error, None otherwise (kept under its old name)."""

_consumer_settings: weakref.WeakKeyDictionary[KafkaBroker, ConsumerSettings] = weakref.WeakKeyDictionary()


def consumer_settings_of(broker: KafkaBroker) -> ConsumerSettings:
    """The consumer settings `make_broker` was given (from the environment when none were)."""
    found = _consumer_settings.get(broker)
    if found is None:
        found = _consumer_settings[broker] = ConsumerSettings()
    return found


class DeadLetters:
    """Sends records that can never be processed to the service's dead-letter topic, with the reason.

    A record too large to forward (over DEAD_LETTER_MAX_BYTES, or refused by the broker) is replaced by
    a small reference, so the dead-letter path itself cannot fail on it. Other send errors propagate:
    a transient one (the broker is away) makes the consumer retry the work later.
    """

    def __init__(self, broker: KafkaBroker, service: str, topics: Topics, max_bytes: int | None = None) -> None:
        self._broker = broker
        self.service = service
        self.topic = topics.dead_letter(service)
        self.max_bytes = max_bytes if max_bytes is not None else consumer_settings_of(broker).dead_letter_max_bytes

    async def send(self, record: Any, reason: str, headers: dict[str, str] | None = None) -> None:
        """`record` is an aiokafka ConsumerRecord (a batch message holds several)."""
        out = dead_letter_headers(record, reason, self.service, datetime.now(UTC), headers)
        size = record_size(record.value, record.key, out)
        if size > self.max_bytes:
            await self._send_reference(record, reason, out, f"{size} bytes, over the limit of {self.max_bytes}")
            return
        try:
            await self._broker.publish(record.value, topic=self.topic, key=record.key, headers=out)
        except _TOO_LARGE as error:
            await self._send_reference(record, reason, out, f"the broker refused {size} bytes: {error!r}")
            return
        metrics.DEAD_LETTERED.labels(record.topic).inc()
        log.warning(
            "dead-lettered %s[%s]@%s to %s: %s", record.topic, record.partition, record.offset, self.topic, reason
        )

    async def _send_reference(self, record: Any, reason: str, headers: dict[str, str], why: str) -> None:
        body = reference_for(record, reason, why)
        await self._broker.publish(body, topic=self.topic, key=record.key, headers=reference_headers(headers, record))
        metrics.DEAD_LETTERED.labels(record.topic).inc()
        log.warning(
            "dead-lettered %s[%s]@%s to %s as a reference (payload omitted: %s): %s",
            record.topic,
            record.partition,
            record.offset,
            self.topic,
            why,
            reason,
        )


def make_broker(
    bootstrap_servers: str,
    service: str,
    topics: Topics,
    tracer_provider: TracerProvider | None = None,
    consumer: ConsumerSettings | None = None,
    connection: KafkaConnectionSettings | None = None,
) -> KafkaBroker:
    """A broker for `service`. `consumer` (any ServiceSettings) sets retries and size limits; default: environment.
    `connection` (default: the one `consumer` carries, else the environment) sets SASL and TLS."""
    broker = KafkaBroker(
        bootstrap_servers,
        client_id=service,
        security=(connection or connection_of(consumer)).faststream_security(),
        middlewares=[KafkaTelemetryMiddleware(tracer_provider=tracer_provider), AccountLogMiddleware],
        description=f"{service} service",
        # Through the root logger's handler (shared.logs), not FastStream's own; quiet below WARNING unless asked.
        logger=logging.getLogger("faststream.kafka"),
        log_level=logging.DEBUG,  # one line per message is too much at INFO; failures still log as warnings
    )
    settings = consumer if consumer is not None else ConsumerSettings()
    _consumer_settings[broker] = settings
    broker.add_middleware(make_dead_letter_middleware(broker, DeadLetters(broker, service, topics), settings))
    owner = weakref.ref(broker)  # the hook must not keep its broker alive
    metrics.on_scrape(broker, metrics.ConsumerLag(lambda: b.subscribers if (b := owner()) else ()).sample)
    return broker


def consumer_options(
    service: str, session_timeout_ms: int = 10_000, prefix: str = "", fetch_max_wait_ms: int | None = None
) -> dict[str, Any]:
    """Subscriber options for a service's consumer group: commit only after the handler succeeded.

    The group id carries the topic prefix, so systems sharing a broker never share a group. The fetch wait is
    KAFKA_FETCH_MAX_WAIT_MS (default 50) unless given."""
    if fetch_max_wait_ms is None:
        fetch_max_wait_ms = ConsumerSettings().kafka_fetch_max_wait_ms
    return {
        "group_id": f"{prefix}{service}",
        "auto_offset_reset": "earliest",
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": max(session_timeout_ms // 4, 500),
        # how long a fetch may wait for data: bounds the latency a quiet partition adds
        "fetch_max_wait_ms": fetch_max_wait_ms,
    }


async def ensure_topics(
    bootstrap_servers: str, names: list[str], partitions: int = 4, connection: KafkaConnectionSettings | None = None
) -> None:
    """Create missing topics before consumers subscribe (a consumer would otherwise wait for metadata).

    Nothing is done where topics are provisioned for the services (KAFKA_CREATE_TOPICS=false: with ACLs a service
    may not create topics, nor even see those of other services)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    connection = connection or KafkaConnectionSettings()
    if not connection.kafka_create_topics:
        return
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="topic-setup", **connection.client_options()
    )
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
