"""Sends the gateway's commands to Kafka through a FastStream broker (publish only, no subscribers).

The broker's telemetry middleware writes the W3C trace context of the HTTP request into the
message headers, so the aggregator's and mapping's work joins the request's trace.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from shared.events import MappingCommand, PublishEntries
from shared.topics import Topics


class KafkaCommandBus:
    def __init__(self, broker: KafkaBroker, topics: Topics) -> None:
        self._broker = broker
        self._topics = topics

    async def send_publish(self, command: PublishEntries, key: str) -> None:
        await self._broker.publish(command, topic=self._topics.publish_commands, key=key.encode())

    async def send_mapping(self, command: MappingCommand, key: str) -> None:
        await self._broker.publish(command, topic=self._topics.mapping_commands, key=key.encode())
