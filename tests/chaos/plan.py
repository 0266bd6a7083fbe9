"""What the suite sets up for one MobiClocks account (pure): its entities, which of them are mapped, Procore ids.

Every account gets its own Procore sandbox company (a company belongs to one account). Some entities are
left unmapped on purpose so that part of the entries are Non publishable: the last job site has no
Procore project, the last employee no Procore person, the last cost code is mapped in no project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

MANPOWER = "manpower"
TIMECARD = "timecard"
PRODUCTION_QUANTITY = "production_quantity"
MODULES = (MANPOWER, TIMECARD, PRODUCTION_QUANTITY)


@dataclass(frozen=True)
class Shape:
    """How big one account is. Entries are bounded by these, whatever the number of events."""

    sites: int = 3
    companies: int = 2
    crews_per_company: int = 2
    employees: int = 6
    cost_codes: int = 4
    pay_ids: tuple[str, ...] = ("REG", "OT")
    units: tuple[str, ...] = ("m3", "ea")
    days: int = 3


@dataclass
class ProcoreIds:
    """The Procore side of one account, as the sandbox answered when it was seeded."""

    company_id: int
    projects: dict[str, int] = field(default_factory=dict)
    """job site → project (mapped sites only)."""
    cost_codes: dict[tuple[str, str], int] = field(default_factory=dict)
    """(job site, cost code) → the cost code of that site's project (every cost code exists in Procore)."""
    vendors: dict[str, int] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)
    time_types: dict[str, int] = field(default_factory=dict)


def work_days(count: int, today: date) -> tuple[date, ...]:
    """`count` consecutive days ending yesterday: timelogs never lie in the future."""
    last = today - timedelta(days=1)
    return tuple(last - timedelta(days=count - 1 - i) for i in range(count))


@dataclass
class AccountPlan:
    account_id: str
    shape: Shape
    days: tuple[date, ...]
    modules: tuple[str, ...] = MODULES
    procore: ProcoreIds | None = None

    # -- MobiClocks entities ------------------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        return [f"site-{i}" for i in range(self.shape.sites)]

    @property
    def mapped_sites(self) -> list[str]:
        return self.sites[:-1]

    @property
    def companies(self) -> list[str]:
        return [f"co-{i}" for i in range(self.shape.companies)]

    def crews(self, company: str) -> list[str]:
        return [f"{company}-crew-{j}" for j in range(self.shape.crews_per_company)]

    @property
    def employees(self) -> list[str]:
        return [f"emp-{i}" for i in range(self.shape.employees)]

    @property
    def mapped_employees(self) -> list[str]:
        return self.employees[:-1]

    def company_of(self, employee: str) -> str:
        return self.companies[int(employee.split("-")[1]) % self.shape.companies]

    @property
    def cost_codes(self) -> list[str]:
        return [f"cc-{i}" for i in range(self.shape.cost_codes)]

    @property
    def mapped_cost_codes(self) -> list[str]:
        return self.cost_codes[:-1]

    @staticmethod
    def cost_code_number(cost_code: str) -> str:
        return f"0{cost_code.split('-')[1]}-100"

    @property
    def weeks(self) -> list[date]:
        """Mondays of the weeks the days fall in (the dashboard shows one week at a time)."""
        return sorted({d - timedelta(days=d.weekday()) for d in self.days})

    # -- what Procore is seeded with ------------------------------------------------------------
    def company_seed(self) -> dict[str, Any]:
        """The sandbox control API body: one project per mapped job site, each with every cost code."""
        return {
            "name": f"Chaos {self.account_id}",
            "projects": [
                {
                    "name": f"Project {site}",
                    "project_number": f"P-{site}",
                    "cost_codes": [
                        {"full_code": self.cost_code_number(cc), "name": f"Code {cc}"} for cc in self.cost_codes
                    ],
                }
                for site in self.mapped_sites
            ],
            "vendors": [{"name": f"Vendor {c}"} for c in self.companies],
            "people": [{"first_name": "Worker", "last_name": e, "employee_id": f"E-{e}"} for e in self.employees],
        }

    def adopt_seed_answer(self, answer: dict[str, Any]) -> ProcoreIds:
        ids = ProcoreIds(company_id=int(answer["company_id"]))
        for site, project in zip(self.mapped_sites, answer["projects"], strict=True):
            ids.projects[site] = int(project["id"])
            for cc, code in zip(self.cost_codes, project["cost_codes"], strict=True):
                ids.cost_codes[(site, cc)] = int(code["id"])
        ids.vendors = {c: int(v) for c, v in zip(self.companies, answer["vendors"], strict=True)}
        ids.people = {e: int(p) for e, p in zip(self.employees, answer["people"], strict=True)}
        by_abbreviation = {t["abbreviated_time_type"]: int(t["id"]) for t in answer["timecard_time_types"]}
        ids.time_types = {p: by_abbreviation[p] for p in self.shape.pay_ids}
        self.procore = ids
        return ids
