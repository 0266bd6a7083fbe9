"""The remap workload (issue 11), shared by `aggregator_bench remap` and `tests/integration/test_aggregator_remap.py`.

One big account whose timecard entries use `codes` cost codes, none mapped yet (so every entry is Non publishable
for its cost code only), the setup and every other mapping it needs, and then the auto-map of all its cost codes:
one `MappingChanged` per code, in the project of the job site that uses it. Other accounts get a stream of
timelogs of their own meanwhile.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from shared.events import MappingChanged, Module, ProcoreEntity, SetupChanged, TimelogUpserted

DAY = date(2026, 3, 2)


@dataclass(frozen=True)
class RemapWorkload:
    codes: int = 1000
    account: str = "big"
    sites: int = 5
    employees: int = 10
    days: int = 4
    timelogs_per_code: int = 2

    def site(self, code: int) -> int:
        return code % self.sites

    def project(self, site: int) -> int:
        return 100 + site

    def setup(self) -> list[SetupChanged | MappingChanged]:
        """The account's setup and every mapping but the cost codes'."""
        a = self.account
        events: list[SetupChanged | MappingChanged] = [
            SetupChanged(account_id=a, procore_company_id=1, enabled_modules=[Module.TIMECARD], two_way=False)
        ]
        for s in range(self.sites):
            events.append(
                MappingChanged(account_id=a, entity=ProcoreEntity.PROJECT, mobiclocks_id=f"s{s}", procore_id=100 + s)
            )
        for e in range(self.employees):
            events.append(
                MappingChanged(account_id=a, entity=ProcoreEntity.EMPLOYEE, mobiclocks_id=f"e{e}", procore_id=200 + e)
            )
        events.append(
            MappingChanged(account_id=a, entity=ProcoreEntity.PAYROLL_TYPE, mobiclocks_id="REG", procore_id=300)
        )
        return events

    def timelogs(self) -> list[TimelogUpserted]:
        """`timelogs_per_code` timelogs per cost code, each code on one job site: one timecard entry per (employee,
        code, day)."""
        out = []
        for code in range(self.codes):
            for n in range(self.timelogs_per_code):
                i = code * self.timelogs_per_code + n
                out.append(
                    TimelogUpserted(
                        account_id=self.account,
                        timelog_id=f"big-{i}",
                        revision=1,
                        employee_id=f"e{i % self.employees}",
                        company_id="c1",
                        job_site_id=f"s{self.site(code)}",
                        work_date=DAY + timedelta(days=i % self.days),
                        duration_seconds=3600,
                        pay_id="REG",
                        cost_code_id=f"cc{code}",
                    )
                )
        return out

    def auto_map(self) -> list[MappingChanged]:
        """What auto-mapping every cost code sends: one change per code, in its job site's project."""
        return [
            MappingChanged(
                account_id=self.account,
                entity=ProcoreEntity.COST_CODE,
                mobiclocks_id=f"cc{code}",
                procore_project_id=self.project(self.site(code)),
                procore_id=10_000 + code,
            )
            for code in range(self.codes)
        ]


def other_setups(accounts: int) -> list[SetupChanged]:
    return [
        SetupChanged(account_id=f"other-{a}", procore_company_id=1, enabled_modules=[Module.TIMECARD], two_way=False)
        for a in range(accounts)
    ]


def other_timelogs(accounts: int) -> Iterator[TimelogUpserted]:
    """An endless stream of new timelogs of `accounts` other accounts (each a new timecard entry or a bigger one)."""
    for i in itertools.count():
        yield TimelogUpserted(
            account_id=f"other-{i % accounts}",
            timelog_id=f"o-{i}",
            revision=1,
            employee_id=f"e{i % 50}",
            company_id="c1",
            job_site_id=f"s{i % 7}",
            work_date=DAY + timedelta(days=(i // 350) % 30),
            duration_seconds=1800,
            pay_id="REG",
        )
