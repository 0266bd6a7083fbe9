"""What keeps a process from being ready, by name: consumers waiting out an outage, unhealthy components.

Liveness and readiness are different questions. A consumer that waits for PostgreSQL to come
back is alive (restarting it would not help) but not ready (it does no work). Parts of a
service report here; the health routes ask `problems()`:

    readiness = readiness_of(broker)         # the broker's middleware already reports into it
    readiness.watch("outbox relay", relay)   # anything with a `.healthy` attribute
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class HasHealthy(Protocol):
    @property
    def healthy(self) -> bool: ...


Probe = Callable[[], Mapping[str, str]]
"""Returns {what: why it is not ready}; empty when all is well."""


class Readiness:
    """A registry of readiness problems: set and cleared by name, or asked of probes and components."""

    def __init__(self) -> None:
        self._problems: dict[str, str] = {}
        self._probes: list[Probe] = []

    def not_ready(self, name: str, reason: str) -> None:
        self._problems[name] = reason

    def ready(self, name: str) -> None:
        self._problems.pop(name, None)

    def add_probe(self, probe: Probe) -> None:
        self._probes.append(probe)

    def watch(self, name: str, component: HasHealthy | Callable[[], HasHealthy | None]) -> None:
        """Not ready while `component.healthy` is false; `component` may be a getter (None: not started yet)."""

        def probe() -> Mapping[str, str]:
            current = component if isinstance(component, HasHealthy) else component()
            if current is None:
                return {name: "not started"}
            return {} if current.healthy else {name: "not healthy"}

        self._probes.append(probe)

    def problems(self) -> dict[str, str]:
        found = dict(self._problems)
        for probe in self._probes:
            found.update(probe())
        return found


_registries: weakref.WeakKeyDictionary[Any, Readiness] = weakref.WeakKeyDictionary()


def readiness_of(owner: Any) -> Readiness:
    """The readiness registry of a broker (or any owner object), created on first use."""
    found = _registries.get(owner)
    if found is None:
        found = _registries[owner] = Readiness()
    return found


def health_body(checks: Mapping[str, bool], problems: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """Status code and JSON body of a readiness answer: 200 only when every check passed and nothing is wrong."""
    ready = all(checks.values()) and not problems
    body: dict[str, Any] = {"status": "ok" if ready else "not ready", **checks}
    if problems:
        body["not_ready"] = dict(problems)
    return (200 if ready else 503), body
