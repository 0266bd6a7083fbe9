"""Pure logic of the Procore sandbox: pagination, rate limiter, faults, filters, state rules."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any

import pytest

from sandbox.procore.faults import FaultRegistry
from sandbox.procore.filters import FilterError, daily_log_range, parse_id_list, parse_time_range
from sandbox.procore.pagination import Page, link_header, paginate, parse_page_params
from sandbox.procore.ratelimit import RateLimitConfig, RateLimiter
from sandbox.procore.seed import CompanySeed, seed_company
from sandbox.procore.state import (
    DEFAULT_CLIENT_ID,
    ChangeEvent,
    ProcoreError,
    SandboxState,
)


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- pagination


def test_page_params_are_lenient_and_capped() -> None:
    assert parse_page_params(None, None, max_per_page=1000) == parse_page_params("0", "x", max_per_page=1000)
    req = parse_page_params("3", "5000", max_per_page=1000)
    assert (req.page, req.per_page) == (3, 1000)


def test_paginate_and_link_header() -> None:
    page = paginate(list(range(250)), parse_page_params("2", "100", max_per_page=1000))
    assert page.items == list(range(100, 200))
    assert page.total == 250
    assert page.last_page == 3
    link = link_header("http://h/p", [("company_id", "1"), ("page", "2")], page)
    assert link == (
        '<http://h/p?company_id=1&page=1&per_page=100>; rel="first", '
        '<http://h/p?company_id=1&page=1&per_page=100>; rel="prev", '
        '<http://h/p?company_id=1&page=3&per_page=100>; rel="next", '
        '<http://h/p?company_id=1&page=3&per_page=100>; rel="last"'
    )
    last: Page[int] = Page(items=[], total=250, page=3, per_page=100)
    assert 'rel="next"' not in link_header("http://h/p", [], last)
    empty: Page[int] = Page(items=[], total=0, page=1, per_page=100)
    assert link_header("http://h/p", [], empty).count("?page=1&") == 2


# ---------------------------------------------------------------- rate limiter


def test_spike_window_blocks_then_resets() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimitConfig(hourly=100, spike=2), clock=clock)
    assert [limiter.hit("k").remaining for _ in range(2)] == [1, 0]
    blocked = limiter.hit("k")
    assert not blocked.allowed
    assert blocked.limit == 2
    assert blocked.retry_after == 10
    assert limiter.hit("other").allowed  # keys are independent
    clock.now += 10
    assert limiter.hit("k").allowed


def test_hourly_window_reported_when_closer_to_exhaustion_and_time_scale() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimitConfig(hourly=3, spike=100, time_scale=0.01), clock=clock)
    first = limiter.hit("k")
    assert (first.limit, first.remaining) == (3, 2)
    assert first.reset == int(clock.now + 36)  # 3600 s * 0.01
    limiter.hit("k")
    limiter.hit("k")
    blocked = limiter.hit("k")
    assert not blocked.allowed
    assert blocked.retry_after == 36
    clock.now += 36
    assert limiter.hit("k").allowed


def test_rejected_requests_do_not_count() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimitConfig(hourly=3, spike=1), clock=clock)
    limiter.hit("k")
    for _ in range(5):
        assert not limiter.hit("k").allowed
    clock.now += 10
    decision = limiter.hit("k")
    assert decision.allowed
    assert decision.remaining == 0
    assert decision.limit == 1


# ---------------------------------------------------------------- faults


def test_fault_times_method_and_glob() -> None:
    registry = FaultRegistry()
    registry.add(path="/rest/v1.0/projects/*/manpower_logs", method="POST", times=2)
    assert registry.pick("GET", "/rest/v1.0/projects/1/manpower_logs", None) is None
    assert registry.pick("POST", "/rest/v1.0/projects/1/manpower_logs", None) is not None
    assert registry.pick("POST", "/rest/v1.0/projects/2/manpower_logs", None) is not None
    assert registry.pick("POST", "/rest/v1.0/projects/2/manpower_logs", None) is None


def test_fault_probability_is_seeded() -> None:
    registry = FaultRegistry(rng=random.Random(1))
    registry.add(path="*", times=None, probability=0.5)
    fired = sum(registry.pick("GET", "/x", None) is not None for _ in range(1000))
    assert 400 < fired < 600


def test_fault_company_scope() -> None:
    registry = FaultRegistry()
    registry.add(path="*", company_id=7, times=None)
    assert registry.pick("GET", "/x", 8) is None
    assert registry.pick("GET", "/x", 7) is not None


# ---------------------------------------------------------------- filters


def test_time_ranges() -> None:
    start, end = parse_time_range("2024-01-01...2024-01-02", "f")
    assert start == datetime(2024, 1, 1, tzinfo=UTC)
    assert end.date() == date(2024, 1, 2)
    assert end.hour == 23
    start, end = parse_time_range("2024-01-01T10:00:00+02:00...2024-01-01T12:00:00Z", "f")
    assert start == datetime(2024, 1, 1, 8, tzinfo=UTC)
    assert end == datetime(2024, 1, 1, 12, tzinfo=UTC)
    with pytest.raises(FilterError):
        parse_time_range("yesterday...today", "filters[updated_at]")
    with pytest.raises(FilterError):
        parse_time_range("2024-01-02...2024-01-01", "f")


def test_daily_log_range_defaults_to_today() -> None:
    today = date(2024, 5, 2)
    assert daily_log_range(None, None, None, today) == (today, today)
    assert daily_log_range("2024-05-01", None, None, today) == (date(2024, 5, 1),) * 2
    assert daily_log_range(None, "2024-04-01", "2024-04-03", today) == (date(2024, 4, 1), date(2024, 4, 3))
    with pytest.raises(FilterError):
        daily_log_range(None, "2024-04-03", "2024-04-01", today)


def test_id_lists() -> None:
    assert parse_id_list(["1", "2,3", ""], "f") == {1, 2, 3}
    with pytest.raises(FilterError):
        parse_id_list(["a"], "f")


# ---------------------------------------------------------------- state rules


@pytest.fixture
def state() -> SandboxState:
    frozen = datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
    return SandboxState(clock=lambda: frozen, wall=FakeClock())


def _company(state: SandboxState) -> dict[str, Any]:
    return seed_company(
        state,
        CompanySeed.model_validate(
            {
                "projects": [{"name": "P", "cost_codes": [{"full_code": "01-100", "name": "C"}]}],
                "vendors": [{"name": "V"}],
                "people": [{"first_name": "A"}],
            }
        ),
    )


def test_timestamps_strictly_increase_with_a_frozen_clock(state: SandboxState) -> None:
    stamps = [state.next_timestamp() for _ in range(5)]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 5


def test_ids_grow_past_explicit_ones(state: SandboxState) -> None:
    state.claim_id(10**15)
    assert state.next_id() == 10**15 + 1


def test_manpower_defaults_and_events(state: SandboxState) -> None:
    ids = _company(state)
    events: list[ChangeEvent] = []
    state.listeners.append(events.append)
    actor = state.actor_for(DEFAULT_CLIENT_ID)
    pid = ids["projects"][0]["id"]
    log = state.create_manpower_log(ids["company_id"], pid, {"manpower_log": {"num_workers": 2}}, actor)
    assert log.status == "approved"
    assert log.date == date(2024, 5, 2)
    updated = state.update_manpower_log(ids["company_id"], pid, log.id, {"num_hours": "8"}, actor)
    assert updated.updated_at > updated.created_at
    assert [e.event_type for e in events] == ["create", "update"]
    with pytest.raises(ProcoreError) as err:
        state.update_manpower_log(ids["company_id"], pid, log.id, {"status": "weird"}, actor)
    assert err.value.status == 422
    assert log.num_hours == 8  # the failed update changed nothing


@pytest.mark.parametrize("value", [2.5, 2.0, "2.5", "two", True])
def test_quantity_must_be_an_integer(state: SandboxState, value: object) -> None:
    ids = _company(state)
    actor = state.actor_for(DEFAULT_CLIENT_ID)
    with pytest.raises(ProcoreError) as err:
        state.create_quantity_log(
            ids["company_id"], ids["projects"][0]["id"], {"quantity_log": {"quantity": value}}, actor
        )
    assert err.value.status == 422
    assert err.value.errors is not None
    assert "quantity" in err.value.errors


def test_timecard_origin_id_unique_per_company(state: SandboxState) -> None:
    ids = _company(state)
    actor = state.actor_for(DEFAULT_CLIENT_ID)
    fields = {"hours": "8", "party_id": ids["people"][0], "origin_id": 5}
    first = state.create_timecard_entry(ids["company_id"], ids["projects"][0]["id"], fields, actor, require_date=False)
    with pytest.raises(ProcoreError) as err:
        state.create_timecard_entry(ids["company_id"], ids["projects"][0]["id"], fields, actor, require_date=False)
    assert err.value.status == 422
    other = _company(state)
    state.create_timecard_entry(
        other["company_id"],
        other["projects"][0]["id"],
        fields | {"party_id": other["people"][0]},
        actor,
        require_date=False,
    )
    state.delete_record("timecard_entries", first, actor)
    state.create_timecard_entry(ids["company_id"], ids["projects"][0]["id"], fields, actor, require_date=False)


def test_token_expiry_and_refresh_rotation(state: SandboxState) -> None:
    wall = state.wall
    assert isinstance(wall, FakeClock)
    client = state.clients[DEFAULT_CLIENT_ID]
    token = state.issue_token(client, "authorization_code", with_refresh=True)
    assert state.check_token(f"Bearer {token.access_token}") is token
    rotated = state.refresh(client, token.refresh_token)
    with pytest.raises(ProcoreError):
        state.refresh(client, token.refresh_token)
    wall.now += 5400
    with pytest.raises(ProcoreError) as err:
        state.check_token(f"Bearer {rotated.access_token}")
    assert err.value.status == 401


def test_generated_seed(state: SandboxState) -> None:
    ids = seed_company(state, CompanySeed.model_validate({"generate": {"people": 1000, "projects": 2}}))
    company = state.companies[ids["company_id"]]
    assert len(company.people) == 1000
    assert len(company.projects) == 2
    assert len(company.time_types) == 3
