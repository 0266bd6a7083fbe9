"""Reading the system's answer back through the gateway HTTP API (the dashboard a user sees).

Why the API and not SQL: it is the product's public read path, it is account-scoped like a user's view,
and it needs no knowledge of the aggregator's tables. Cheap dashboard reads tell when the system has
converged; the full read (every cell's details, then every entry) is done once, for the verdict.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tests.chaos.clients import Gateway
from tests.chaos.oracle import CellKey, CellNumbers, EntryKey, entry_key
from tests.chaos.plan import MANPOWER, TIMECARD, AccountPlan


@dataclass
class SeenEntry:
    """One entry as the gateway shows it."""

    entry_id: str
    key: EntryKey
    status: str
    row: dict[str, Any]
    procore_id: int | None
    version: int

    @property
    def last_error(self) -> str | None:
        value = self.row.get("last_error")
        return str(value) if value else None


@dataclass
class DashboardView:
    cells: dict[CellKey, CellNumbers]
    counts: dict[str, int]
    """Entries per status over all cells."""
    non_publishable: dict[CellKey, int]
    """Non publishable entries per cell."""


async def dashboard(gateway: Gateway, plan: AccountPlan) -> DashboardView:
    cells: dict[CellKey, CellNumbers] = {}
    counts: dict[str, int] = {}
    non_publishable: dict[CellKey, int] = {}
    for module in plan.modules:
        for week in plan.weeks:
            board = await gateway.get(plan.account_id, f"/api/modules/{module}/dashboard", {"week_start": str(week)})
            for row in board["rows"]:
                for day, cell in zip(board["days"], row["days"], strict=True):
                    if cell is None:
                        continue
                    for status, n in cell["counts"].items():
                        counts[status] = counts.get(status, 0) + n
                    numbers = CellNumbers(
                        manpower=int(cell.get("manpower") or 0),
                        total_hours=Decimal(str(cell.get("total_hours") or 0)),
                        timecards=int(cell.get("timecards") or 0),
                        quantities={
                            (cost_code_id, unit): Decimal(str(quantity))
                            for cost_code_id, unit, quantity in cell.get("quantities") or []
                        },
                    )
                    key = (module, row["job_site"]["job_site_id"], day)
                    cells[key] = numbers
                    non_publishable[key] = int(cell["counts"].get("non_publishable") or 0)
    return DashboardView(cells, counts, non_publishable)


def cell_differences(module_cells: dict[CellKey, CellNumbers], expected: dict[CellKey, CellNumbers]) -> int:
    """How many cells show other numbers than the recompute (a missing cell counts as zeros)."""
    empty = CellNumbers()
    differing = 0
    for key in set(module_cells) | set(expected):
        seen, want = module_cells.get(key, empty), expected.get(key, empty)
        module = key[0]
        if module == MANPOWER:
            same = (seen.manpower, seen.total_hours) == (want.manpower, want.total_hours)
        elif module == TIMECARD:
            same = seen.timecards == want.timecards
        else:
            same = {k: v for k, v in seen.quantities.items() if v} == {k: v for k, v in want.quantities.items() if v}
        differing += not same
    return differing


def non_publishable_differences(seen: dict[CellKey, int], expected: dict[CellKey, tuple[int, int]]) -> int:
    """How many cells show another number of Non publishable entries than the recompute expects.

    `expected` holds (Non publishable entries, how many of them may show Failed instead: fractional quantities
    Procore refused). A mapping change reaches entries after a debounce (the aggregator's remap), so this is
    what tells that the statuses, not only the numbers, have caught up."""
    differing = 0
    for key in set(seen) | set(expected):
        want, may_fail = expected.get(key, (0, 0))
        differing += not (want - may_fail <= seen.get(key, 0) <= want)
    return differing


async def entries(gateway: Gateway, plan: AccountPlan, concurrency: int = 8) -> list[SeenEntry]:
    """Every entry of the account: dashboard → each cell's details → each entry (for its ids and procore id)."""
    a = plan.account_id
    cells: list[tuple[str, str, str]] = []
    for module in plan.modules:
        for week in plan.weeks:
            board = await gateway.get(a, f"/api/modules/{module}/dashboard", {"week_start": str(week)})
            cells += [
                (module, r["job_site"]["job_site_id"], day)
                for r in board["rows"]
                for day, c in zip(board["days"], r["days"], strict=True)
                if c
            ]
    gate = asyncio.Semaphore(concurrency)

    async def cell_rows(module: str, site: str, day: str) -> list[str]:
        async with gate:
            details = await gateway.get(a, f"/api/modules/{module}/cells/{site}/{day}")
        return [str(row["entry_id"]) for row in details["rows"]]

    async def entry(entry_id: str) -> SeenEntry:
        async with gate:
            e = await gateway.get(a, f"/api/entries/{entry_id}")
        key = entry_key(e["module"], e["job_site"]["job_site_id"], e["work_date"], e["dims"])
        return SeenEntry(entry_id, key, e["status"], e["row"], e.get("procore_id"), int(e.get("version") or 0))

    ids = [i for rows in await asyncio.gather(*(cell_rows(*c) for c in cells)) for i in rows]
    return list(await asyncio.gather(*(entry(i) for i in ids)))
