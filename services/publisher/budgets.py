"""Which rate budget each company's calls spend: Procore counts calls per token, not per company.

Every call made with one Procore connection (one token) spends that connection's budget, whichever company it is
for: several companies under one token share it, and the limiter paces them together. Without per-account
connections (the app's own service account) every company shares the app token's one budget.

A company's lease carries the budget saved by its last owner. The connection a company's calls use is learnt from
its first request (the account names it), so a budget restored before that is kept until then.

Across instances: the companies under one token may be leased by different instances, so a token's budget is also
kept in PostgreSQL (`adapters/token_budgets.py`, one row per token): every call of the token by any instance first
takes its turn there (the pure rules below: `due_at`, `take`, `learn`), and every answer's `X-Rate-Limit-*` headers
are folded in. Together the instances stay within the one budget Procore counts.

`PROCORE_RATE_LIMIT_SCOPE=company` paces each company on its own instead (a Procore, or the sandbox's default, that
counts per company).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from shared.procore import RateLimiter, budget_key
from shared.procore.ratelimit import pace

RateLimitScope = Literal["token", "company"]

APP_TOKEN: Hashable = ("token", "app")


def connection_budget(account_id: str) -> Hashable:
    return ("token", "connection", account_id)


class TokenBudgets:
    def __init__(self, limiter: RateLimiter, *, per_account: bool, scope: RateLimitScope = "token") -> None:
        self._limiter = limiter
        self._per_account = per_account
        self._per_company = scope == "company"
        self._of_company: dict[int, Hashable] = {}
        self._saved: dict[int, Mapping[str, Any]] = {}

    def key(self, company_id: int) -> Hashable:
        """The budget this company's calls spend (before its connection is known: one of its own)."""
        if self._per_company:
            return budget_key(company_id)
        if not self._per_account:
            return APP_TOKEN
        return self._of_company.get(company_id, ("company", company_id))

    def learn(self, company_id: int, account_id: str) -> Hashable:
        """The company's calls go through this account's connection: its budget from now on."""
        if self._per_company:
            return budget_key(company_id)
        if not self._per_account:
            return APP_TOKEN
        key = connection_budget(account_id)
        if self._of_company.get(company_id) != key:
            self._of_company[company_id] = key
            saved = self._saved.pop(company_id, None)
            if saved is not None:
                self._limiter.restore(key, saved)
        return key

    def snapshot(self, company_id: int) -> dict[str, Any] | None:
        return self._limiter.snapshot(self.key(company_id))

    def restore(self, company_id: int, saved: Mapping[str, Any] | None) -> None:
        if not saved:
            return
        if self._per_account and not self._per_company and company_id not in self._of_company:
            self._saved[company_id] = saved
            return
        self._limiter.restore(self.key(company_id), saved)


def shared_name(key: Hashable) -> str | None:
    """The name of a token's budget kept in PostgreSQL for every instance (None: this process paces it alone)."""
    if isinstance(key, tuple) and key and key[0] == "token":
        return ":".join(str(part) for part in key[1:])
    return None


@dataclass(frozen=True)
class SharedBudget:
    """A token's budget as every instance sees it (Unix seconds): the conservative sum of what they all know."""

    remaining: int | None = None
    reset_at: float = 0.0
    blocked_until: float = 0.0
    next_at: float = 0.0


def due_at(budget: SharedBudget, now: float, margin_s: float) -> float:
    """When the token's next call (by any instance) may go (pure)."""
    due = max(now, budget.blocked_until, budget.next_at)
    if budget.remaining is not None and budget.remaining <= 0 and budget.reset_at > now:
        due = max(due, budget.reset_at + margin_s)
    return due


def take(budget: SharedBudget, now: float, margin_s: float) -> SharedBudget:
    """One call goes now: count it and pace the next one (pure). Unknown numbers (none yet, or the window over) let
    the next call go at once: each instance has one call of a token on the wire at a time."""
    if budget.remaining is None or budget.reset_at <= now:
        return replace(budget, remaining=None, next_at=now)
    remaining = budget.remaining - 1
    return replace(budget, remaining=remaining, next_at=pace(now, remaining, budget.reset_at, margin_s))


def learn(
    budget: SharedBudget,
    now: float,
    margin_s: float,
    *,
    remaining: int | None,
    reset_at: float,
    blocked_until: float,
) -> SharedBudget:
    """Fold one answer's numbers into the shared budget (pure). Within a window the lower count wins: another
    instance may have counted calls this answer's numbers do not include yet."""
    merged = replace(budget, blocked_until=max(budget.blocked_until, blocked_until))
    if remaining is None:
        return merged
    known = budget.remaining is not None and budget.reset_at > now
    if known and budget.remaining is not None and (budget.remaining, -budget.reset_at) <= (remaining, -reset_at):
        return merged
    paced = max(budget.next_at, pace(now, remaining, reset_at, margin_s))
    return replace(merged, remaining=remaining, reset_at=reset_at, next_at=paced)
