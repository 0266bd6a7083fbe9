"""Generated MobiClocks timelog traffic for a set of accounts (pure, seeded).

Besides new timelogs it edits them (duration, a move to another job site, day, crew or cost code, the
pay ID, the employee, the quantities), deletes some, re-delivers earlier messages (exact duplicates and
stale revisions) and sends some revisions in the wrong order, as an at-least-once pipeline does.
Every message it yields is also what the oracle learns from; nothing else feeds the oracle.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from tests.chaos import messages as m
from tests.chaos.plan import AccountPlan


@dataclass(frozen=True)
class Mix:
    """Shares of each kind of step (the rest are new timelogs) and of timelog features."""

    edit: float = 0.22
    delete: float = 0.05
    duplicate: float = 0.05
    stale: float = 0.04
    reorder: float = 0.04
    quantities: float = 0.35
    fractional: float = 0.03
    duration_only: float = 0.15
    no_crew: float = 0.1
    no_cost_code: float = 0.08


@dataclass
class Outgoing:
    """One Kafka message to send: a JSON body (valid) or raw bytes (poison)."""

    topic: str
    key: str
    value: m.Json | bytes
    valid: bool = True
    label: str = ""


@dataclass(eq=False)  # identity: list.remove must not compare whole histories
class _Timelog:
    plan: AccountPlan
    timelog_id: str
    body: m.Json
    revision: int
    site: str
    deleted: bool = False
    sent: list[Outgoing] = field(default_factory=list)


class Generator:
    def __init__(self, plans: Sequence[AccountPlan], seed: int, mix: Mix | None = None) -> None:
        self.plans = list(plans)
        self.rng = random.Random(seed)
        self.mix = mix or Mix()
        self.live: list[_Timelog] = []
        self.every: list[_Timelog] = []
        self.recent: list[Outgoing] = []
        self.counter = 0
        self.cap = sum(len(p.employees) * len(p.days) * 3 for p in self.plans)

    # -- building timelog bodies --------------------------------------------------------------------
    def _clock(self, body: m.Json, day_iso: str, minutes: int) -> None:
        r = self.rng
        if r.random() < self.mix.duration_only:
            body["clock_in"] = body["clock_out"] = None
            # any number of seconds, so that half-up rounding of hours is exercised
            body["duration_seconds"] = minutes * 60 + r.choice([0, 0, 0, 18, 17, 19, 42])
        else:
            day = datetime.fromisoformat(day_iso).date()
            start = datetime.combine(day, time(6, 0), tzinfo=UTC) + timedelta(minutes=r.randrange(180))
            body["clock_in"] = start.isoformat()
            body["clock_out"] = (start + timedelta(minutes=minutes)).isoformat()
            body["duration_seconds"] = None

    def _cost_code(self, plan: AccountPlan) -> str | None:
        r = self.rng
        if r.random() < self.mix.no_cost_code:
            return None
        # the unmapped (last) cost code is rarer: most entries should be publishable
        return r.choice(plan.mapped_cost_codes) if r.random() < 0.9 else plan.cost_codes[-1]

    def _quantities(self, plan: AccountPlan) -> list[m.Json]:
        r = self.rng
        if r.random() >= self.mix.quantities:
            return []
        out = []
        for _ in range(r.choice([1, 1, 2])):
            units: int | str = r.randint(1, 20)
            if r.random() < self.mix.fractional:
                units = f"{r.randint(1, 9)}.5"
            out.append(
                {
                    "cost_code_id": self._cost_code(plan) or plan.cost_codes[0],
                    "unit_of_measure": r.choice(plan.shape.units),
                    "units": units,
                }
            )
        return out

    def _site(self, plan: AccountPlan) -> str:
        # the unmapped (last) job site is rarer too
        return self.rng.choice(plan.mapped_sites) if self.rng.random() < 0.9 else plan.sites[-1]

    def _crew(self, plan: AccountPlan, company: str) -> str | None:
        return None if self.rng.random() < self.mix.no_crew else self.rng.choice(plan.crews(company))

    def _new_body(self, plan: AccountPlan) -> m.Json:
        r = self.rng
        employee = r.choice(plan.employees)
        company = plan.company_of(employee)
        day = r.choice(plan.days).isoformat()
        body: m.Json = {
            "employee_id": employee,
            "company_id": company,
            "crew_tag": self._crew(plan, company),
            "job_site_id": self._site(plan),
            "work_date": day,
            "cost_code_id": self._cost_code(plan),
            "pay_class_id": None,
            "pay_id": r.choice(plan.shape.pay_ids),
            "quantities": self._quantities(plan),
        }
        self._clock(body, day, r.randrange(30, 240))
        return body

    def _edited(self, t: _Timelog) -> m.Json:
        r, plan = self.rng, t.plan
        body = copy.deepcopy(t.body)
        change = r.randrange(8)
        if change == 0:
            self._clock(body, body["work_date"], r.randrange(30, 240))
        elif change == 1:
            body["job_site_id"] = self._site(plan)
        elif change == 2:
            body["work_date"] = r.choice(plan.days).isoformat()
            self._clock(body, body["work_date"], r.randrange(30, 240))
        elif change == 3:
            body["crew_tag"] = self._crew(plan, body["company_id"])
        elif change == 4:
            body["cost_code_id"] = self._cost_code(plan)
        elif change == 5:
            body["pay_id"] = r.choice(plan.shape.pay_ids)
        elif change == 6:
            body["quantities"] = self._quantities(plan)
        else:
            body["employee_id"] = r.choice(plan.employees)
            body["company_id"] = plan.company_of(body["employee_id"])
            body["crew_tag"] = self._crew(plan, body["company_id"])
        return body

    # -- messages -------------------------------------------------------------------------------
    def _upsert(self, t: _Timelog, body: m.Json, revision: int) -> Outgoing:
        value = {
            **m.envelope(t.plan.account_id, "timelog.upserted"),
            "timelog_id": t.timelog_id,
            "revision": revision,
            **body,
        }
        return Outgoing(m.TIMELOGS, m.timelog_key(t.plan.account_id, body["job_site_id"]), value)

    def _remember(self, t: _Timelog, out: Outgoing) -> Outgoing:
        t.sent.append(out)
        self.recent.append(out)
        if len(self.recent) > 4000:
            del self.recent[:2000]
        return out

    def _new(self) -> list[Outgoing]:
        plan = self.rng.choice(self.plans)
        self.counter += 1
        body = self._new_body(plan)
        t = _Timelog(plan, f"tl-{self.counter}", body, 1, body["job_site_id"])
        self.live.append(t)
        self.every.append(t)
        return [self._remember(t, self._upsert(t, body, 1))]

    def _edit(self, t: _Timelog, reorder: bool) -> list[Outgoing]:
        first = self._edited(t)
        out = [self._remember(t, self._upsert(t, first, t.revision + 1))]
        t.body, t.revision, t.site = first, t.revision + 1, first["job_site_id"]
        if reorder:  # the newer revision overtakes the older one
            second = self._edited(t)
            out.insert(0, self._remember(t, self._upsert(t, second, t.revision + 1)))
            t.body, t.revision, t.site = second, t.revision + 1, second["job_site_id"]
        return out

    def _delete(self, t: _Timelog) -> list[Outgoing]:
        t.revision += 1
        t.deleted = True
        self.live.remove(t)
        out = Outgoing(
            m.TIMELOGS,
            m.timelog_key(t.plan.account_id, t.site),
            m.timelog_deleted(t.plan.account_id, t.timelog_id, t.revision),
        )
        return [self._remember(t, out)]

    def _redeliver(self, stale: bool) -> list[Outgoing]:
        r = self.rng
        if stale:
            candidates = [t for t in self.every[-500:] if len(t.sent) > 1]
            if not candidates:
                return self._new()
            old = r.choice(r.choice(candidates).sent[:-1])
        else:
            old = r.choice(self.recent)
        if isinstance(old.value, dict) and r.random() < 0.3:
            # the same revision re-emitted under a new event id: still the same change
            fresh = {**old.value, "event_id": str(uuid.uuid4())}
            return [Outgoing(old.topic, old.key, fresh)]
        return [Outgoing(old.topic, old.key, old.value)]

    def step(self) -> list[Outgoing]:
        """The next one or two messages."""
        mix, roll = self.mix, self.rng.random()
        if not self.live:
            return self._new()
        t = self.live[-1 - self.rng.randrange(min(len(self.live), 400))]
        if len(self.live) > self.cap:
            # about three timelogs per employee and day: past that MobiClocks edits and deletes, so
            # entries keep realistic hours however long the load runs
            return self._delete(t) if roll < 0.5 else self._edit(t, reorder=roll < 0.55)
        if roll < mix.duplicate:
            return self._redeliver(stale=False)
        roll -= mix.duplicate
        if roll < mix.stale:
            return self._redeliver(stale=True)
        roll -= mix.stale
        if roll < mix.delete:
            return self._delete(t)
        roll -= mix.delete
        if roll < mix.reorder:
            return self._edit(t, reorder=True)
        roll -= mix.reorder
        if roll < mix.edit:
            return self._edit(t, reorder=False)
        return self._new()

    def take(self, count: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        while len(out) < count:
            out.extend(self.step())
        return out
