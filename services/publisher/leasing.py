"""This instance's side of the company leases: renew what it holds, claim its fair share, hand over the excess.

`tick()` runs every third of the lease TTL (driven by `workers.CompanyWorkers`): it renews the
leases held (saving each company's rate budget with it), learns which were lost, says it is alive,
claims free or expired leases up to its fair share of the companies that have work, and asks the
workers of companies beyond that share to hand them over after their current request. A claimed
company's saved budget is restored into the limiter before its first call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.publisher.adapters.leases import Claimed, LeaseStore
from services.publisher.budgets import TokenBudgets
from services.publisher.lease import Lease, fair_share
from shared.procore import RateLimiter, budget_key

log = logging.getLogger(__name__)


@dataclass
class Changes:
    gained: list[tuple[Lease, float]] = field(default_factory=list)
    """New leases, each with the seconds to stay quiet first."""
    lost: list[Lease] = field(default_factory=list)
    hand_over: list[Lease] = field(default_factory=list)


class LeaseKeeper:
    def __init__(
        self,
        store: LeaseStore,
        limiter: RateLimiter,
        ttl_s: float,
        margin_s: float,
        clock: Callable[[], float] = time.monotonic,
        budgets: TokenBudgets | None = None,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._token_budgets = budgets
        self._ttl_s = ttl_s
        self._margin_s = margin_s
        self._clock = clock
        self.held: dict[int, Lease] = {}
        self.fair = 1
        """This instance's share of the companies with work, as of the last tick."""
        self.live = 1
        """Live instances, as of the last tick."""

    @property
    def owner(self) -> str:
        return self._store.owner

    def _snapshot(self, company_id: int) -> dict[str, object] | None:
        if self._token_budgets is not None:
            return self._token_budgets.snapshot(company_id)
        return self._limiter.snapshot(budget_key(company_id))

    def _budgets(self) -> dict[int, dict[str, object] | None]:
        return {c: self._snapshot(c) for c in list(self.held)}

    def _active(self) -> int:
        return sum(1 for lease in self.held.values() if not lease.handing_over)

    async def tick(self) -> Changes:
        changes = Changes()
        started = self._clock()
        asked = dict(self.held)
        renewed, self.live, with_work = await self._store.tick(
            {c: lease.token for c, lease in asked.items()}, self._budgets()
        )
        for company_id, lease in asked.items():
            if company_id in renewed:
                lease.renewed(started, self._ttl_s, self._margin_s)
            elif self.held.get(company_id) is lease:  # not released (or released and claimed again) meanwhile
                log.warning("lost the lease of company %s (token %s) to another instance", company_id, lease.token)
                self.forget(lease)
                changes.lost.append(lease)
        self.fair = fair_share(with_work, self.live)
        changes.gained = await self._claim(self.fair - self._active(), None, started)
        excess = self._active() - self.fair
        if excess > 0:
            for lease in [x for x in self.held.values() if not x.handing_over][:excess]:
                lease.handing_over = True
                changes.hand_over.append(lease)
        took = self._clock() - started
        if took > self._ttl_s / 3:
            log.warning(
                "a lease tick took %.2f s (%d leases held, %d gained)", took, len(self.held), len(changes.gained)
            )
        return changes

    async def claim(self, companies: Sequence[int]) -> list[tuple[Lease, float]]:
        """Claim leases of companies that just got work here, within this instance's fair share."""
        wanted = [c for c in companies if c not in self.held]
        if not wanted:
            return []
        started = self._clock()
        # the work just stored counts: the share is companies with work ÷ live instances, as of now
        fair = fair_share(await self._store.companies_with_work(), self.live)
        return await self._claim(fair - self._active(), wanted, started)

    async def _claim(self, limit: int, only: Sequence[int] | None, started: float) -> list[tuple[Lease, float]]:
        claimed: list[Claimed] = await self._store.claim(limit, only, exclude=list(self.held))
        gained = []
        for c in claimed:
            lease = Lease(c.company_id, c.token, started + self._ttl_s - self._margin_s, self._clock)
            if self._token_budgets is not None:
                self._token_budgets.restore(c.company_id, c.budget)
            else:
                self._limiter.restore(budget_key(c.company_id), c.budget)
            self.held[c.company_id] = lease
            gained.append((lease, c.quiet_s))
            log.info("claimed company %s (token %s, quiet %.1f s)", c.company_id, c.token, c.quiet_s)
        return gained

    def forget(self, lease: Lease) -> None:
        lease.lost = True
        if self.held.get(lease.company_id) is lease:
            del self.held[lease.company_id]

    async def release(self, lease: Lease, *, idle: bool, quiet_s: float = 0.0) -> bool:
        """Give a company up, saving its budget. `idle`: only when it has no work left (False otherwise)."""
        budget = self._snapshot(lease.company_id)
        if not await self._store.release(lease.company_id, lease.token, budget, idle=idle, quiet_s=quiet_s):
            return False
        self.forget(lease)
        return True
