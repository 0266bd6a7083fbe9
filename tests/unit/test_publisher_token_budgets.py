"""The shared token budget's rules (pure): when the next call may go, counting a call, folding in an answer."""

from __future__ import annotations

from services.publisher.budgets import APP_TOKEN, SharedBudget, connection_budget, due_at, learn, shared_name, take


def test_only_token_budgets_are_shared() -> None:
    assert shared_name(APP_TOKEN) == "app"
    assert shared_name(connection_budget("acc-1")) == "connection:acc-1"
    assert shared_name(42) is None
    assert shared_name(("company", 42)) is None


def test_unknown_numbers_let_a_call_go_at_once() -> None:
    assert due_at(SharedBudget(), 100.0, 0.05) == 100.0
    assert take(SharedBudget(), 100.0, 0.05).next_at == 100.0


def test_a_call_counts_and_paces_the_next_over_the_window() -> None:
    after = take(SharedBudget(remaining=5, reset_at=110.0), 100.0, 0.05)
    assert after.remaining == 4
    assert after.next_at == 102.0  # 4 calls left in 10 s: one every 2 s, the last 2 s before the reset
    assert due_at(after, 101.0, 0.05) == 102.0


def test_none_left_waits_for_the_reset_and_a_block_for_its_end() -> None:
    assert due_at(SharedBudget(remaining=0, reset_at=110.0), 100.0, 0.05) == 110.05
    assert due_at(SharedBudget(remaining=0, reset_at=90.0), 100.0, 0.05) == 100.0  # that window is over
    assert due_at(SharedBudget(blocked_until=103.0), 100.0, 0.05) == 103.0


def test_within_a_window_the_lower_count_wins() -> None:
    shared = SharedBudget(remaining=3, reset_at=110.0, next_at=101.0)
    kept = learn(shared, 100.0, 0.05, remaining=5, reset_at=110.0, blocked_until=0.0)
    assert (kept.remaining, kept.reset_at, kept.next_at) == (3, 110.0, 101.0)
    lower = learn(shared, 100.0, 0.05, remaining=1, reset_at=110.0, blocked_until=0.0)
    assert (lower.remaining, lower.next_at) == (1, 105.0)


def test_a_new_window_replaces_the_old_numbers_and_blocks_add_up() -> None:
    old = SharedBudget(remaining=0, reset_at=99.0, blocked_until=104.0)
    new = learn(old, 100.0, 0.05, remaining=9, reset_at=120.0, blocked_until=102.0)
    assert (new.remaining, new.reset_at, new.blocked_until) == (9, 120.0, 104.0)
    assert learn(old, 100.0, 0.05, remaining=None, reset_at=0.0, blocked_until=0.0).remaining == 0
