"""Pure lease rules: when this instance may still write for a company, its fair share, the worker's backoff."""

from __future__ import annotations

import pytest

from services.publisher.lease import Lease, LeaseExpired, LeaseLost, backoff_s, fair_share
from shared.transient import is_transient


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_is_good_until_its_local_deadline_and_renewal_moves_it() -> None:
    clock = Clock()
    lease = Lease(company_id=7, token=3, valid_until=104.0, clock=clock)
    lease.check()
    clock.now = 104.0  # e.g. the process was paused, or renewals failed: time passed without a renewal
    with pytest.raises(LeaseExpired):
        lease.check()
    lease.renewed(started_at=103.5, ttl_s=5.0, margin_s=1.0)  # the renewal began before the pause
    assert lease.valid_until == 107.5
    lease.check()


def test_a_renewal_that_started_earlier_never_shortens_the_lease() -> None:
    lease = Lease(company_id=7, token=3, valid_until=110.0, clock=Clock())
    lease.renewed(started_at=101.0, ttl_s=5.0, margin_s=1.0)
    assert lease.valid_until == 110.0


def test_a_lost_lease_refuses_at_once_and_is_not_worth_waiting_for() -> None:
    lease = Lease(company_id=7, token=3, valid_until=1e12, clock=Clock())
    lease.lost = True
    with pytest.raises(LeaseLost) as caught:
        lease.check()
    assert not is_transient(caught.value)  # the worker stops; it does not back off and retry
    assert is_transient(LeaseExpired("x"))  # the worker backs off until the lease is renewed


@pytest.mark.parametrize(
    ("companies", "instances", "share"),
    [(0, 2, 0), (1, 3, 1), (5, 2, 3), (6, 2, 3), (6, 1, 6), (7, 0, 7)],
)
def test_fair_share_splits_companies_with_work_over_live_instances(companies: int, instances: int, share: int) -> None:
    assert fair_share(companies, instances) == share


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n, 0.5, 30.0) for n in range(0, 9)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_s(10_000, 0.5, 30.0) == 30.0
