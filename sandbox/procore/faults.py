"""Injected faults: which request gets which failure. Pure matching logic; the app applies them."""

from __future__ import annotations

import fnmatch
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultKind = Literal["status", "latency", "timeout", "drop", "fail_after_commit"]
AfterCommitMode = Literal["status", "drop"]


@dataclass
class Fault:
    """One injected failure rule.

    kind:
      status            answer `status` (500/502/503/...) unhandled; 503 carries Retry-After
      latency           sleep `latency_ms`, then handle the request normally
      timeout           sleep `timeout_s` (longer than the client's timeout), then answer 504
      drop              close the connection without an answer and without handling the request
      fail_after_commit handle the request (the write happens), then answer `status` or drop the connection
    """

    id: int
    path: str  # glob matched against the URL path, e.g. "/rest/v1.0/projects/*/manpower_logs"
    method: str = "*"
    kind: FaultKind = "status"
    status: int = 500
    times: int | None = 1  # None = unlimited
    probability: float = 1.0
    latency_ms: int = 0
    timeout_s: float = 30.0
    retry_after: int = 1
    after_commit: AfterCommitMode = "status"
    company_id: int | None = None
    hits: int = 0

    def matches(self, method: str, path: str, company_id: int | None) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if self.company_id is not None and self.company_id != company_id:
            return False
        return fnmatch.fnmatchcase(path, self.path)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultRegistry:
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    faults: list[Fault] = field(default_factory=list)
    _next_id: int = 1

    def add(self, **spec: Any) -> Fault:
        fault = Fault(id=self._next_id, **spec)
        self._next_id += 1
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def pick(self, method: str, path: str, company_id: int | None) -> Fault | None:
        """First matching fault that fires (probability), consuming one of its `times`."""
        for fault in self.faults:
            if not fault.matches(method, path, company_id):
                continue
            if fault.probability < 1.0 and self.rng.random() >= fault.probability:
                continue
            if fault.times is not None:
                fault.times -= 1
            fault.hits += 1
            return fault
        return None
