"""A realistic MobiClocks event stream for benchmarks and property tests.

Accounts have job sites, employees (in companies and crews), cost codes and pay IDs.
Employees clock in and out on job sites day after day; about 15 % of events edit an
existing timelog (duration, a move to another job site, day, crew or cost code), about
3 % delete one, and about 5 % are stale or duplicate deliveries of an earlier revision.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from shared.events import Module, SetupChanged, TimelogDeleted, TimelogUpserted


@dataclass
class Shape:
    accounts: int = 50
    job_sites: int = 10
    employees: int = 40
    companies: int = 4
    crews_per_company: int = 2
    cost_codes: int = 30
    pay_ids: tuple[str, ...] = ("REG", "OT", "DT")
    start: date = date(2026, 1, 5)
    edit_share: float = 0.15
    delete_share: float = 0.03
    stale_share: float = 0.05


@dataclass
class Generator:
    shape: Shape = field(default_factory=Shape)
    seed: int = 1
    rng: random.Random = field(init=False)
    live: dict[tuple[str, str], TimelogUpserted] = field(default_factory=dict, init=False)
    revisions: dict[tuple[str, str], int] = field(default_factory=dict, init=False)
    history: list[TimelogUpserted | TimelogDeleted] = field(default_factory=list, init=False)
    recent: list[tuple[str, str]] = field(default_factory=list, init=False)
    counter: int = field(default=0, init=False)
    day_index: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def setups(self) -> list[SetupChanged]:
        return [
            SetupChanged(
                account_id=self.account(a), procore_company_id=1000 + a, enabled_modules=list(Module), two_way=False
            )
            for a in range(self.shape.accounts)
        ]

    @staticmethod
    def account(a: int) -> str:
        return f"acct-{a:03d}"

    def _new_timelog(self) -> TimelogUpserted:
        s, r = self.shape, self.rng
        self.counter += 1
        a = r.randrange(s.accounts)
        emp = r.randrange(s.employees)
        company = emp % s.companies
        crew = (emp // s.companies) % s.crews_per_company
        # Most work is recent: a sliding window of days, as a live system sees.
        day = s.start + timedelta(days=self.day_index + r.randrange(3))
        start = datetime(day.year, day.month, day.day, 6, tzinfo=UTC) + timedelta(minutes=r.randrange(180))
        hours = r.choice([2, 4, 4, 6, 8, 8, 8, 9.5, 10])
        cc = r.randrange(s.cost_codes)
        return TimelogUpserted(
            account_id=self.account(a),
            timelog_id=f"tl-{self.counter}",
            revision=1,
            employee_id=f"emp-{emp}",
            company_id=f"co-{company}",
            crew_tag=f"crew-{crew}",
            job_site_id=f"site-{r.randrange(s.job_sites)}",
            work_date=day,
            clock_in=start,
            clock_out=start + timedelta(hours=hours),
            cost_code_id=f"cc-{cc}",
            pay_class_id=None if r.random() < 0.7 else "pc-1",
            pay_id=r.choice(s.pay_ids),
            quantities=[
                {"cost_code_id": f"cc-{cc}", "unit_of_measure": r.choice(["m3", "ea"]), "units": r.randint(1, 20)}
            ]
            if r.random() < 0.3
            else [],
        )

    def _edit(self, old: TimelogUpserted) -> TimelogUpserted:
        r = self.rng
        key = (old.account_id, old.timelog_id)
        rev = self.revisions.get(key, old.revision) + 1
        change = r.random()
        update: dict[str, object] = {"revision": rev}
        if change < 0.4:
            assert old.clock_in is not None
            update["clock_out"] = old.clock_in + timedelta(hours=r.choice([3, 5, 7, 8.5]))
        elif change < 0.6:
            update["job_site_id"] = f"site-{r.randrange(self.shape.job_sites)}"
        elif change < 0.7:
            day = old.work_date + timedelta(days=r.choice([-1, 1]))
            update["work_date"] = day
        elif change < 0.85:
            update["crew_tag"] = f"crew-{r.randrange(self.shape.crews_per_company)}"
        else:
            update["cost_code_id"] = f"cc-{r.randrange(self.shape.cost_codes)}"
        return old.model_copy(update=update)

    def _recent_live(self) -> tuple[str, str] | None:
        for _ in range(8):
            key = self.recent[-1 - self.rng.randrange(min(len(self.recent), 3000))]
            if key in self.live:
                return key
        return None

    def events(self, count: int) -> Iterator[TimelogUpserted | TimelogDeleted]:
        s, r = self.shape, self.rng
        for i in range(count):
            if i and i % 2000 == 0:
                self.day_index += 1
            roll = r.random()
            if self.history and roll < s.stale_share:
                yield r.choice(self.history[-5000:])  # a duplicate or stale re-delivery
                continue
            key = self._recent_live() if self.recent else None
            if key is not None and roll < s.stale_share + s.delete_share:
                old = self.live.pop(key)
                rev = self.revisions.get(key, old.revision) + 1
                self.revisions[key] = rev
                event: TimelogUpserted | TimelogDeleted = TimelogDeleted(
                    account_id=old.account_id, timelog_id=old.timelog_id, revision=rev
                )
            elif key is not None and roll < s.stale_share + s.delete_share + s.edit_share:
                event = self._edit(self.live[key])
                self.revisions[key] = event.revision
                self.live[key] = event
            else:
                event = self._new_timelog()
                self.live[(event.account_id, event.timelog_id)] = event
                self.recent.append((event.account_id, event.timelog_id))
            self.history.append(event)
            if len(self.history) > 20_000:
                del self.history[:10_000]
            yield event
