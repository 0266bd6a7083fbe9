"""Pure parts of Procore's stricter rules: clock times from timelogs, start/stop bodies, refusal reasons, and which
rate budget a company's calls spend."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from services.publisher.budgets import APP_TOKEN, TokenBudgets, connection_budget
from services.publisher.domain import (
    DURATIONS_ONLY,
    bulk_groups,
    refusal_reason,
    wants_start_stop,
    with_clock_times,
)
from shared.events import Module, ProcoreOperation, PublishToProcore, TimecardClock
from shared.procore import RateLimiter

DAY = date(2026, 11, 20)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 20, hour, minute, tzinfo=UTC)


def test_clock_is_first_in_last_out_with_the_gaps_as_lunch() -> None:
    clock = TimecardClock.of_spans([(at(12, 30), at(16)), (at(7), at(12))])
    assert (clock.first_in, clock.last_out, clock.lunch_minutes, clock.durations_only) == (at(7), at(16), 30, False)


def test_overlapping_timelogs_leave_no_invented_lunch() -> None:
    clock = TimecardClock.of_spans([(at(7), at(12)), (at(11), at(15)), (at(8), at(9))])
    assert (clock.first_in, clock.last_out, clock.lunch_minutes) == (at(7), at(15), 0)


def test_a_timelog_with_a_duration_only_means_no_times() -> None:
    assert TimecardClock.of_spans([(at(7), at(12)), (None, None)]).durations_only
    assert TimecardClock.of_spans([]).durations_only


def test_start_stop_body_carries_the_clock_or_says_why_not() -> None:
    body, problem = with_clock_times({"hours": "8.5"}, TimecardClock(first_in=at(7), last_out=at(16), lunch_minutes=30))
    assert problem is None
    assert body == {
        "hours": "8.5",
        "time_in": "2026-11-20T07:00:00Z",
        "time_out": "2026-11-20T16:00:00Z",
        "lunch_time": "30",
    }
    assert with_clock_times({"hours": "8"}, TimecardClock(durations_only=True))[1] == DURATIONS_ONLY
    assert with_clock_times({"hours": "8"}, None)[1] == DURATIONS_ONLY


def test_start_stop_refusal_is_a_422_on_the_times_of_an_hours_only_body() -> None:
    errors = {"errors": {"time_in": ["is required"], "time_out": ["is required"]}}
    assert wants_start_stop(422, errors, {"hours": "8"})
    assert not wants_start_stop(422, errors, {"hours": "8", "time_in": "x"})
    assert not wants_start_stop(422, {"errors": {"hours": ["bad"]}}, {"hours": "8"})
    assert not wants_start_stop(403, errors, {})


def _request(**kw: object) -> PublishToProcore:
    return PublishToProcore(
        account_id="a",
        entry_id=uuid.uuid4(),
        entry_version=1,
        module=Module.TIMECARD,
        operation=ProcoreOperation.CREATE,
        procore_company_id=1,
        procore_project_id=22,
        work_date=DAY,
        payload={"party_id": 5},
        marker="[mc:x]",
        **kw,
    )


def test_refusals_with_a_reason_of_their_own() -> None:
    completed = refusal_reason(_request(), 403, "Daily Log is completed for this date", None)
    assert completed == "Procore's daily log for 2026-11-20 is completed — reopen it in Procore, then republish"
    directory = {"errors": {"party_id": ["5 is not in the directory of project 22"]}}
    assert refusal_reason(_request(person_name="Ada Lovelace", project_name="Tower A"), 422, "x", directory) == (
        "Ada Lovelace is not in the directory of Procore project Tower A — add them to the project's directory in"
        " Procore, then republish"
    )
    assert refusal_reason(_request(), 422, "x", directory) == (
        "Procore person 5 is not in the directory of Procore project 22 — add them to the project's directory in"
        " Procore, then republish"
    )
    assert refusal_reason(_request(), 422, "hours must be between 0 and 24", None) is None
    assert refusal_reason(_request(), 500, "Daily Log completed", None) is None


def test_companies_under_one_connection_share_its_budget() -> None:
    limiter = RateLimiter(clock=lambda: 1000.0)
    budgets = TokenBudgets(limiter, per_account=True)
    assert budgets.learn(1, "acc") == budgets.learn(2, "acc") == connection_budget("acc")
    assert budgets.learn(3, "other") != budgets.key(1)
    limiter.observe(budgets.key(1), 429, {"Retry-After": "5"})
    assert limiter.delay_for(budgets.key(2)) > 4  # a 429 for company 1 holds company 2 too: one token
    assert limiter.delay_for(budgets.key(3)) == 0


def test_a_budget_handed_over_before_the_connection_is_known_is_kept_until_it_is() -> None:
    limiter = RateLimiter(clock=lambda: 1000.0)
    budgets = TokenBudgets(limiter, per_account=True)
    budgets.restore(7, {"remaining": 0, "reset_at": 1010.0, "observed_at": 999.0})
    key = budgets.learn(7, "acc")
    assert limiter.delay_for(key) >= 10
    assert budgets.snapshot(7) is not None


def test_the_app_token_is_one_budget_and_company_scope_is_one_per_company() -> None:
    limiter = RateLimiter()
    app = TokenBudgets(limiter, per_account=False)
    assert app.learn(1, "a") == app.key(2) == APP_TOKEN
    per_company = TokenBudgets(limiter, per_account=True, scope="company")
    assert per_company.learn(1, "a") != per_company.learn(2, "a")


def _req(module: Module, project: int = 22, entry: uuid.UUID | None = None, **kw: object) -> PublishToProcore:
    return PublishToProcore(
        account_id="a",
        entry_id=entry or uuid.uuid4(),
        entry_version=1,
        module=module,
        procore_company_id=1,
        procore_project_id=project,
        work_date=DAY,
        payload={} if kw.get("operation") is ProcoreOperation.DELETE else {"origin_id": 1},
        marker="[mc:x]",
        **({"operation": ProcoreOperation.CREATE} | kw),
    )


def test_bulk_runs_gather_timecard_creates_per_project_and_keep_each_entrys_order() -> None:
    tc, mp = Module.TIMECARD, Module.MANPOWER
    again = uuid.uuid4()
    requests = [
        _req(tc),  # 0
        _req(mp),  # 1
        _req(tc),  # 2 joins 0 (another entry's manpower in between does not matter)
        _req(tc, project=33),  # 3 another project: a run of its own
        _req(tc, entry=again, operation=ProcoreOperation.DELETE, procore_id=5),  # 4
        _req(tc, entry=again),  # 5 the same entry as 4: after it, alone
        _req(tc, force=True),  # 6 not a plain create
        _req(tc, project=33),  # 7 joins 3
    ]
    assert bulk_groups(requests) == [[0, 2], [1], [3, 7], [4], [5], [6]]
    assert bulk_groups([_req(tc) for _ in range(30)], max_size=25) == [list(range(25)), list(range(25, 30))]


def test_a_partial_run_is_held_back_with_its_entries_while_more_is_pending() -> None:
    tc, mp = Module.TIMECARD, Module.MANPOWER
    same = uuid.uuid4()
    requests = [
        _req(tc),
        _req(mp),
        _req(tc, entry=same),
        _req(tc, entry=same, operation=ProcoreOperation.DELETE, procore_id=9),
        _req(mp),
    ]
    assert bulk_groups(requests, hold_partial=True) == [[1], [4]]  # the run [0, 2] and 3 (entry of 2) wait
    assert bulk_groups([_req(tc), _req(tc)], hold_partial=True) == [[0, 1]]  # nothing else to do: sent
    full = [_req(tc) for _ in range(25)]
    assert bulk_groups([*full, _req(mp)], hold_partial=True) == [list(range(25)), [25]]
