"""The week view (dashboard) of a module: read-model groups in, plain dicts out (serialized once by orjson). Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from services.gateway.cells import STATUS_PRECEDENCE, allowed_actions, cell_status
from services.gateway.names import Names, label
from services.gateway.schemas import (
    Dashboard,
    EntryStatus,
    GridCell,
    GridJobSite,
)
from services.gateway.weeks import week_days
from shared.events import Module, ReferenceKind

# --- dashboard -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusGroup:
    """Entries of one cell with one status, summed by the read-model query."""

    job_site_id: str
    work_date: date
    status: EntryStatus
    entries: int
    conflicts: int = 0
    manpower: int = 0
    total_hours: Decimal = Decimal(0)
    timecards: int = 0


@dataclass(frozen=True, slots=True)
class QuantityGroup:
    job_site_id: str
    work_date: date
    cost_code_id: str
    unit: str
    units: Decimal


@dataclass(frozen=True)
class SitePage:
    """Which job sites a week view shows: sorted by name, filtered by `q`, `offset`… at most `limit` of them."""

    sites: list[GridJobSite]
    total: int
    offset: int = 0
    limit: int | None = None
    q: str = ""


def grid_job_site(names: Names, job_site_id: str) -> GridJobSite:
    found = names.get((ReferenceKind.JOB_SITE.value, job_site_id))
    if found is None:
        return {"job_site_id": job_site_id, "name": job_site_id, "number": None}
    return {"job_site_id": job_site_id, "name": found.name, "number": found.number}


def page_of_sites(
    job_site_ids: Iterable[str], names: Names, q: str = "", offset: int = 0, limit: int | None = None
) -> SitePage:
    """Job sites sorted by name (then id), those whose name or number contains `q` (any case), and the page."""
    needle = q.strip().lower()
    sites = [grid_job_site(names, s) for s in job_site_ids]
    if needle:
        sites = [s for s in sites if needle in s["name"].lower() or needle in (s["number"] or "").lower()]
    sites.sort(key=lambda j: (j["name"].lower(), j["job_site_id"]))
    end = None if limit is None else offset + limit
    return SitePage(sites[offset:end], len(sites), offset, limit, q.strip())


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def build_dashboard(
    module: Module,
    week_start: date,
    status_filter: Sequence[EntryStatus],
    groups: Iterable[StatusGroup],
    quantities: Iterable[QuantityGroup],
    names: Names,
    page: SitePage | None = None,
) -> Dashboard:
    """A page of job sites (all those with entries by default, sorted by name) by the 7 days of the week, each cell
    summarising its entries: only what the grid shows (a compact payload the browser renders at once)."""
    days = week_days(week_start)
    slot = {d: i for i, d in enumerate(days)}
    by_cell: dict[tuple[str, date], list[StatusGroup]] = defaultdict(list)
    for g in groups:
        if g.work_date in slot:
            by_cell[(g.job_site_id, g.work_date)].append(g)
    quantities_by_cell: dict[tuple[str, date], list[QuantityGroup]] = defaultdict(list)
    for q in quantities:
        quantities_by_cell[(q.job_site_id, q.work_date)].append(q)

    cost_codes: dict[str, str] = {}
    cells_by_site: dict[str, list[GridCell | None]] = {}
    for (site, day), cell_groups in by_cell.items():
        counts = {g.status: g.entries for g in cell_groups}
        conflicts = sum(g.conflicts for g in cell_groups)
        cell: GridCell = {
            "status": cell_status(counts),
            "counts": {s.value: n for s, n in counts.items()},
            "actions": allowed_actions(counts, conflicts),
        }
        if conflicts:
            cell["conflicts"] = conflicts
        if module is Module.MANPOWER:
            cell["manpower"] = sum(g.manpower for g in cell_groups)
            cell["total_hours"] = _decimal_text(sum((g.total_hours for g in cell_groups), Decimal(0)))
        elif module is Module.TIMECARD:
            cell["timecards"] = sum(g.timecards for g in cell_groups)
        else:
            tracked = []
            for q in quantities_by_cell.get((site, day), []):
                name = cost_codes.get(q.cost_code_id)
                if name is None:
                    name = cost_codes[q.cost_code_id] = (
                        label(names, ReferenceKind.COST_CODE, q.cost_code_id) or q.cost_code_id
                    )
                tracked.append((name.lower(), q.unit, q.cost_code_id, _decimal_text(q.units)))
            tracked.sort()
            cell["quantities"] = [(cost_code, unit, units) for _, unit, cost_code, units in tracked]
        cells_by_site.setdefault(site, [None] * 7)[slot[day]] = cell

    shown = page if page is not None else page_of_sites(cells_by_site, names)
    return {
        "module": module,
        "week_start": week_start,
        "days": days,
        "status_filter": list(status_filter),
        "status_precedence": list(STATUS_PRECEDENCE),
        "rows": [
            {"job_site": s, "days": cells_by_site.get(s["job_site_id"]) or [None] * 7}
            for s in shown.sites
            if s["job_site_id"] in cells_by_site
        ],
        "cost_codes": cost_codes,
        "total_rows": shown.total,
        "offset": shown.offset,
        "limit": shown.limit,
        "q": shown.q,
    }
