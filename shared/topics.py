"""Kafka topic names. A prefix keeps test runs (and tenants of a shared cluster) apart."""

from dataclasses import dataclass


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

    def all(self, services: tuple[str, ...] = ("aggregator", "publisher", "mapping")) -> list[str]:
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
