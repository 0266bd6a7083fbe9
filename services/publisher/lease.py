"""Company leases, the pure part: one instance works a company at a time, and writes to Procore only while its
lease is good (the `Lease` model, its fencing errors, each instance's fair share, a worker's backoff)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.transient import Transient


class LeaseLost(Exception):
    """Another instance took this company over (its fencing token moved on): stop working it, write nothing."""


class LeaseExpired(Transient):
    """This instance could not renew the company's lease in time: no Procore write until it has renewed it."""


@dataclass
class Lease:
    """A company this instance works, as this instance knows it.

    PostgreSQL decides who holds the lease (owner, expiry, fencing token). Locally the lease is
    good until `valid_until`: the start of the last successful renewal plus the TTL, minus a
    safety margin, on the monotonic clock. A process that was paused or cut off from the database
    finds that time passed when it wakes up, so it never writes to Procore on a lease that may
    already be someone else's.
    """

    company_id: int
    token: int
    valid_until: float
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    lost: bool = False
    handing_over: bool = False
    """Asked to go to another instance (fair share): finish the current request, then release."""

    def renewed(self, started_at: float, ttl_s: float, margin_s: float) -> None:
        self.valid_until = max(self.valid_until, started_at + ttl_s - margin_s)

    def check(self) -> None:
        """Raise unless this instance may write for the company right now."""
        if self.lost:
            raise LeaseLost(f"company {self.company_id}: lease {self.token} was taken over")
        if self.clock() >= self.valid_until:
            raise LeaseExpired(f"company {self.company_id}: lease {self.token} not renewed in time")


def fair_share(companies_with_work: int, live_instances: int) -> int:
    """How many companies one instance should hold so that the live instances split them evenly."""
    if companies_with_work <= 0:
        return 0
    return math.ceil(companies_with_work / max(live_instances, 1))


def backoff_s(failures: int, base_s: float, max_s: float) -> float:
    """Capped exponential wait before a company's worker tries again after `failures` failed rounds in a row."""
    if failures <= 0:
        return 0.0
    return min(base_s * 2 ** min(failures - 1, 30), max_s)
