"""Kafka topic names. A prefix keeps test runs (and tenants of a shared cluster) apart."""

from dataclasses import dataclass

CONSUMING_SERVICES = ("aggregator", "publisher", "mapping")
"""The services with consumers: each has a dead-letter topic."""
REPLAY_MARKER_SUFFIX = ".replayed"
"""`<dead-letter topic>.replayed` records which dead letters were sent back (shared.dead_letters)."""


@dataclass(frozen=True)
class Topics:
    prefix: str = ""

    def _name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def timelogs(self) -> str:
        return self._name("mobiclocks.timelogs")

    @property
    def reference(self) -> str:
        return self._name("mobiclocks.reference")

    @property
    def publish_commands(self) -> str:
        return self._name("publish.commands")

    @property
    def publish_requests(self) -> str:
        return self._name("procore.publish-requests")

    @property
    def publish_results(self) -> str:
        return self._name("procore.publish-results")

    @property
    def mapping_commands(self) -> str:
        return self._name("mapping.commands")

    @property
    def mapping_changes(self) -> str:
        return self._name("mapping.changes")

    def dead_letter(self, service: str) -> str:
        """One dead-letter topic per consuming service; the source topic is in a header."""
        return self._name(f"{service}.dead-letter")

    def replay_marker(self, service: str) -> str:
        """Which dead letters of `service` were replayed (`python -m shared.dead_letters replay`)."""
        return f"{self.dead_letter(service)}{REPLAY_MARKER_SUFFIX}"

    def replay_markers(self, services: tuple[str, ...] = CONSUMING_SERVICES) -> list[str]:
        return [self.replay_marker(s) for s in services]

    def all(self, services: tuple[str, ...] = CONSUMING_SERVICES) -> list[str]:
        names = [
            self.timelogs,
            self.reference,
            self.publish_commands,
            self.publish_requests,
            self.publish_results,
            self.mapping_commands,
            self.mapping_changes,
        ]
        return names + [self.dead_letter(s) for s in services]


@dataclass(frozen=True)
class TopicAccess:
    """What one Kafka principal may do: the broker's ACLs are made from this (shared.kafka_acls)."""

    produces: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()
    """Read as a member of its `groups`, or by assigning partitions itself (no group)."""
    groups: tuple[str, ...] = ()


def topic_access(topics: Topics) -> dict[str, TopicAccess]:
    """Principal → the topics it produces to and consumes: the one table of who may touch which topic.

    tests/unit/test_kafka_acls.py holds every service's subscriber and publisher declarations to it, and the
    provisioned ACLs (deploy/kafka/acls.txt, applied by docker compose's kafka-setup job) to what it implies.
    """
    aggregator_in = (
        topics.timelogs,
        topics.reference,
        topics.mapping_changes,
        topics.publish_commands,
        topics.publish_results,
    )
    publisher_in = (topics.publish_requests,)
    mapping_in = (topics.mapping_commands, topics.reference)
    consumers = {"aggregator": aggregator_in, "publisher": publisher_in, "mapping": mapping_in}
    return {
        "aggregator": TopicAccess(
            produces=(topics.publish_requests, topics.dead_letter("aggregator")),
            consumes=aggregator_in,
            # timelogs in batches; commands, results and changes one at a time in a group of their own
            groups=(f"{topics.prefix}aggregator", f"{topics.prefix}aggregator.control"),
        ),
        "publisher": TopicAccess(
            produces=(topics.publish_results, topics.dead_letter("publisher")),
            consumes=publisher_in,
            groups=(f"{topics.prefix}publisher",),
        ),
        "mapping": TopicAccess(
            # mapping.commands too: a new connection's CompleteProcoreConnection goes to itself (through the outbox)
            produces=(topics.mapping_changes, topics.mapping_commands, topics.dead_letter("mapping")),
            consumes=mapping_in,
            groups=(f"{topics.prefix}mapping",),
        ),
        # The gateway only sends commands; it consumes nothing.
        "gateway": TopicAccess(produces=(topics.publish_commands, topics.mapping_commands)),
        # MobiClocks core feeds the system.
        "mobiclocks-core": TopicAccess(produces=(topics.timelogs, topics.reference)),
        # `python -m shared.dead_letters`: reads dead letters and their replay markers, sends them back to their
        # source topics (what the consuming services read) and marks them replayed.
        "operator": TopicAccess(
            produces=tuple(
                dict.fromkeys([*(t for inputs in consumers.values() for t in inputs), *topics.replay_markers()])
            ),
            consumes=tuple(t for s in consumers for t in (topics.dead_letter(s), topics.replay_marker(s))),
        ),
    }
