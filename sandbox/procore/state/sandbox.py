"""`SandboxState`: everything the sandbox knows, put together from its parts; `reset()` returns it to the start."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.procore.faults import FaultRegistry
from sandbox.procore.ratelimit import RateLimitConfig, RateLimiter
from sandbox.procore.rules import Rules
from sandbox.procore.state.base import FIRST_ID, Settings
from sandbox.procore.state.errors import ProcoreError
from sandbox.procore.state.identity import Actor
from sandbox.procore.state.manpower import ManpowerLogs
from sandbox.procore.state.oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, OAuthGrants
from sandbox.procore.state.quantity import QuantityLogs
from sandbox.procore.state.records import RECORD_KINDS, AnyRecord, RecordKind
from sandbox.procore.state.timecards import TimecardEntries


class SandboxState(OAuthGrants, ManpowerLogs, QuantityLogs, TimecardEntries):
    """Everything the sandbox knows. One instance per app; `reset()` returns it to the start state."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))
        self.wall = wall or time.time
        self.listeners = []
        self.reset()

    # ------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        self.settings = Settings()
        self.limiter = RateLimiter(RateLimitConfig(), clock=self.wall)
        self.faults = FaultRegistry()
        self.rules = Rules()
        self.companies = {}
        self.clients = {}
        self.users = {}
        self.tokens = {}
        self.refresh_tokens = {}
        self.auth_codes = {}
        self.records = {kind: {} for kind in RECORD_KINDS}
        self.hooks = {}
        self.triggers = {}
        self.request_log = deque(maxlen=self.settings.request_log_max)
        self.deliveries = []
        self._last_id = FIRST_ID
        self._last_ts = None
        self._request_seq = 0
        self.procore_user = Actor(user_id=self.next_id(), name="Pat Procore", login="pat@procore.example")
        self.register_client(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, [])

    # ------------------------------------------------------------ "as a Procore user" edits (control API)

    def user_edit(self, kind: RecordKind, record_id: int, fields: dict[str, Any]) -> AnyRecord:
        rec = self.records[kind].get(record_id)
        if rec is None or rec.deleted_at is not None:
            raise ProcoreError(404, f"{kind} {record_id} not found")
        actor = self.procore_user
        if kind == "manpower_logs":
            return self.update_manpower_log(rec.company_id, rec.project_id, record_id, fields, actor)
        if kind == "quantity_logs":
            return self.update_quantity_log(rec.company_id, rec.project_id, record_id, fields, actor)
        return self.update_timecard_entry(rec.company_id, rec.project_id, record_id, fields, actor)

    def user_delete(self, kind: RecordKind, record_id: int) -> AnyRecord:
        rec = self.records[kind].get(record_id)
        if rec is None or rec.deleted_at is not None:
            raise ProcoreError(404, f"{kind} {record_id} not found")
        return self.delete_record(kind, rec, self.procore_user)
