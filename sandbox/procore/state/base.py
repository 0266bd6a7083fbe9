"""What the sandbox holds, and what every part of it shares: ids, the clock, and company lookups with access checks."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.procore.faults import FaultRegistry
from sandbox.procore.ratelimit import RateLimiter
from sandbox.procore.rules import Rules, stamp
from sandbox.procore.state.errors import ProcoreError
from sandbox.procore.state.identity import Actor, AuthCode, Client, Token, User
from sandbox.procore.state.records import AnyRecord, ChangeEvent, Hook, RecordKind, Trigger
from sandbox.procore.state.reference import Company, CostCode, Project, TimeType

FIRST_ID = 562_949_953_421_312  # 2**49: Procore ids are large; keeps clients honest about 64-bit storage


@dataclass
class Settings:
    token_lifetime_s: int = 5400
    per_page_max: int = 1000
    today: date | None = None  # pin "today" for Daily Log defaults; None = the UTC date of the clock
    duplicate_origin_status: int = 422
    webhook_max_attempts: int = 4
    webhook_retry_base_s: float = 0.5
    webhook_timeout_s: float = 5.0
    request_log_max: int = 100_000


class StateBase:
    """The state's attributes (set by `SandboxState.reset`) and the ids, clock and lookups every family uses."""

    clock: Callable[[], datetime]
    wall: Callable[[], float]
    listeners: list[Callable[[ChangeEvent], None]]
    settings: Settings
    limiter: RateLimiter
    faults: FaultRegistry
    rules: Rules
    companies: dict[int, Company]
    clients: dict[str, Client]
    users: dict[int, User]
    tokens: dict[str, Token]
    refresh_tokens: dict[str, Token]
    auth_codes: dict[str, AuthCode]
    records: dict[RecordKind, dict[int, AnyRecord]]
    hooks: dict[int, Hook]
    triggers: dict[int, Trigger]
    request_log: deque[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    procore_user: Actor
    _last_id: int
    _last_ts: datetime | None
    _request_seq: int

    # ------------------------------------------------------------ ids and time

    def next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def claim_id(self, explicit: int | None) -> int:
        if explicit is None:
            return self.next_id()
        self._last_id = max(self._last_id, explicit)
        return explicit

    def next_timestamp(self, company_id: int | None = None) -> datetime:
        """Strictly increasing: two writes in the same clock tick still get different updated_at — unless the
        company's rule says one-second precision (real Procore), where two writes within a second look the same."""
        now = self.clock().astimezone(UTC)
        if company_id is not None and self.rules.company(company_id).timestamp_precision == "second":
            return stamp(now, "second")
        if self._last_ts is not None and now <= self._last_ts:
            now = self._last_ts + timedelta(microseconds=1)
        self._last_ts = now
        return now

    def today(self) -> date:
        return self.settings.today or self.clock().astimezone(UTC).date()

    def next_request_seq(self) -> int:
        self._request_seq += 1
        return self._request_seq

    # ------------------------------------------------------------ companies and lookups

    def company(self, company_id: int) -> Company:
        company = self.companies.get(company_id)
        if company is None:
            raise ProcoreError(404, f"Company {company_id} not found", reason="not_found")
        return company

    def require_installed(self, client_id: str, company_id: int) -> Company:
        company = self.companies.get(company_id)
        if company is None or company_id not in self.clients[client_id].company_ids:
            raise ProcoreError(403, "App is not connected to this company", reason="forbidden")
        return company

    def require_access(self, token: Token, company_id: int) -> Company:
        """The app must be installed in the company; a user's token also needs the user to be a member."""
        company = self.require_installed(token.client_id, company_id)
        if token.user_id is not None and company_id not in self.users[token.user_id].company_ids:
            raise ProcoreError(403, "You do not have access to this company", reason="forbidden")
        return company

    def companies_for(self, token: Token) -> list[Company]:
        """`GET /companies`: where the app is installed — and, for a user's token, where the user is a member."""
        ids = set(self.clients[token.client_id].company_ids)
        if token.user_id is not None:
            ids &= self.users[token.user_id].company_ids
        return [self.companies[cid] for cid in sorted(ids) if cid in self.companies]

    def project(self, company_id: int, project_id: int) -> Project:
        project = self.companies[company_id].projects.get(project_id) if company_id in self.companies else None
        if project is None:
            raise ProcoreError(404, f"Project {project_id} not found", reason="not_found")
        return project

    def cost_code(self, company_id: int, cost_code_id: int | None) -> CostCode | None:
        if cost_code_id is None or company_id not in self.companies:
            return None
        for project in self.companies[company_id].projects.values():
            if cost_code_id in project.cost_codes:
                return project.cost_codes[cost_code_id]
        return None

    def time_types_for(self, company_id: int) -> list[TimeType]:
        return list(self.companies[company_id].time_types.values())
