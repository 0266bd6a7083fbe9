"""The oracle: what the entries must be, recomputed from scratch from the messages the suite sent (pure).

Independent of the product code on purpose; it follows the rules of shared/DESIGN.md:
- a timelog's state is its highest revision (an upsert, or a delete = tombstone); lower or equal
  revisions change nothing, whatever order they arrive in;
- manpower per (job site, day, company, crew tag): distinct employees, total hours, average = total /
  manpower; timecard per (job site, day, employee, pay ID, cost code, pay class): hours; production
  quantity per (job site, day, cost code, unit): the sum of units; only enabled modules have entries;
- hours = seconds / 3600 rounded half-up to 0.01;
- an entry is Non publishable when a mapping it needs is missing (or, for quantities, when Procore could
  not take it: a fractional number).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tests.chaos.plan import MANPOWER, PRODUCTION_QUANTITY, TIMECARD, AccountPlan

HUNDREDTH = Decimal("0.01")

DIMS: dict[str, tuple[str, ...]] = {
    MANPOWER: ("company_id", "crew_tag"),
    TIMECARD: ("employee_id", "pay_id", "cost_code_id", "pay_class_id"),
    PRODUCTION_QUANTITY: ("cost_code_id", "unit_of_measure"),
}

EntryKey = tuple[str, str, str, tuple[str | None, ...]]
"""(module, job site, day as ISO date, the module's dimensions in DIMS order)."""

CellKey = tuple[str, str, str]
"""(module, job site, day)."""


def hours(seconds: int) -> Decimal:
    return (Decimal(seconds) / Decimal(3600)).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)


def seconds_of(body: dict[str, Any]) -> int:
    if body.get("duration_seconds") is not None:
        return int(body["duration_seconds"])
    start = datetime.fromisoformat(body["clock_in"])
    end = datetime.fromisoformat(body["clock_out"])
    return int((end - start).total_seconds())


def entry_key(module: str, job_site_id: str, work_date: str, dims: dict[str, Any]) -> EntryKey:
    return (module, job_site_id, work_date, tuple(dims.get(d) or None for d in DIMS[module]))


@dataclass
class Expected:
    """One entry as a from-scratch recompute says it must be."""

    key: EntryKey
    seconds: int = 0
    members: set[str] = field(default_factory=set)
    units: Decimal = Decimal(0)
    blockers: list[str] = field(default_factory=list)

    @property
    def module(self) -> str:
        return self.key[0]

    @property
    def fractional(self) -> bool:
        return self.module == PRODUCTION_QUANTITY and self.units != self.units.to_integral_value()

    @property
    def publishable(self) -> bool:
        return not self.blockers

    @property
    def manpower(self) -> int:
        return len(self.members)

    @property
    def total_hours(self) -> Decimal:
        return hours(self.seconds)

    def averages(self) -> set[Decimal]:
        """DESIGN says average = total / manpower; total exact or already rounded both read that way."""
        heads = Decimal(max(self.manpower, 1))
        exact = (Decimal(self.seconds) / Decimal(3600) / heads).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)
        of_rounded = (self.total_hours / heads).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)
        return {exact, of_rounded}

    def value_problems(self, row: dict[str, Any]) -> list[str]:
        """How a details row of the gateway API differs from this entry ([] when equal)."""
        problems: list[str] = []

        def differs(name: str, actual: Any, expected: Decimal | int | set[Decimal]) -> None:
            try:
                got = Decimal(str(actual)) if actual is not None else None
            except ArithmeticError:
                got = None
            ok = got in expected if isinstance(expected, set) else got == expected
            if not ok:
                want = "/".join(sorted(map(str, expected))) if isinstance(expected, set) else expected
                problems.append(f"{name} {actual} ≠ {want}")

        if self.module == MANPOWER:
            differs("manpower", row.get("manpower"), self.manpower)
            differs("total_hours", row.get("total_hours"), self.total_hours)
            differs("average", row.get("average"), self.averages())
        elif self.module == TIMECARD:
            differs("hours", row.get("timelog_duration"), self.total_hours)
        else:
            differs("units", row.get("unit"), self.units)
        return problems


@dataclass
class CellNumbers:
    """What a dashboard cell shows for its entries (used to see the system converge cheaply)."""

    manpower: int = 0
    total_hours: Decimal = Decimal(0)
    timecards: int = 0
    quantities: dict[tuple[str, str], Decimal] = field(default_factory=dict)


class Oracle:
    def __init__(self, plans: list[AccountPlan]) -> None:
        self.plans = {p.account_id: p for p in plans}
        self.timelogs: dict[tuple[str, str], tuple[int, dict[str, Any] | None]] = {}
        self.observed = 0

    def add_plans(self, plans: list[AccountPlan]) -> None:
        self.plans.update({p.account_id: p for p in plans})

    def observe(self, message: dict[str, Any]) -> None:
        """Learn from one valid timelog message that was sent (duplicates and stale ones included)."""
        self.observed += 1
        key = (message["account_id"], message["timelog_id"])
        revision = int(message["revision"])
        stored = self.timelogs.get(key)
        if stored is not None and stored[0] >= revision:
            return
        self.timelogs[key] = (revision, message if message["type"] == "timelog.upserted" else None)

    # -- expectations ---------------------------------------------------------------------------
    def _blockers(self, plan: AccountPlan, e: Expected) -> list[str]:
        module, site, _day, dims = e.key
        found: list[str] = []
        if site not in plan.mapped_sites:
            found.append(f"job site {site} not mapped")
        named = dict(zip(DIMS[module], dims, strict=True))
        if module == MANPOWER and named["company_id"] not in plan.companies:
            found.append(f"company {named['company_id']} not mapped")
        if module == TIMECARD:
            if named["employee_id"] not in plan.mapped_employees:
                found.append(f"employee {named['employee_id']} not mapped")
            if named["pay_id"] not in plan.shape.pay_ids:
                found.append(f"pay ID {named['pay_id']} not mapped")
        if module in (TIMECARD, PRODUCTION_QUANTITY):
            cost_code = named["cost_code_id"]
            if cost_code is not None and cost_code not in plan.mapped_cost_codes:
                found.append(f"cost code {cost_code} not mapped")
        if e.fractional:
            found.append("fractional quantity")
        return found

    def entries(self, account_id: str) -> dict[EntryKey, Expected]:
        plan = self.plans[account_id]
        out: dict[EntryKey, Expected] = {}

        def entry(module: str, body: dict[str, Any], dims: dict[str, Any]) -> Expected:
            key = entry_key(module, body["job_site_id"], body["work_date"], dims)
            return out.setdefault(key, Expected(key))

        for (account, _tl), (_rev, body) in self.timelogs.items():
            if account != account_id or body is None:
                continue
            seconds = seconds_of(body)
            if MANPOWER in plan.modules:
                e = entry(MANPOWER, body, body)
                e.seconds += seconds
                e.members.add(body["employee_id"])
            if TIMECARD in plan.modules:
                entry(TIMECARD, body, body).seconds += seconds
            if PRODUCTION_QUANTITY in plan.modules:
                for q in body.get("quantities") or []:
                    entry(PRODUCTION_QUANTITY, body, q).units += Decimal(str(q["units"]))
        for e in out.values():
            e.blockers = self._blockers(plan, e)
        return out

    def non_publishable(self, account_id: str) -> dict[CellKey, tuple[int, int]]:
        """Per cell: (entries that must be Non publishable, how many of them are fractional quantities)."""
        cells: dict[CellKey, tuple[int, int]] = {}
        for (module, site, day, _dims), e in self.entries(account_id).items():
            if not e.publishable:
                n, fractional = cells.get((module, site, day), (0, 0))
                cells[(module, site, day)] = (n + 1, fractional + e.fractional)
        return cells

    def cells(self, account_id: str) -> dict[CellKey, CellNumbers]:
        cells: dict[CellKey, CellNumbers] = defaultdict(CellNumbers)
        for (module, site, day, dims), e in self.entries(account_id).items():
            cell = cells[(module, site, day)]
            if module == MANPOWER:
                cell.manpower += e.manpower
                cell.total_hours += e.total_hours
            elif module == TIMECARD:
                cell.timecards += 1
            else:
                q = (str(dims[0]), str(dims[1]))
                cell.quantities[q] = cell.quantities.get(q, Decimal(0)) + e.units
        return dict(cells)
