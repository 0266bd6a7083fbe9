"""A cell's details table, its Errors panel and one entry's detail with its publish history. Pure.

The read-model rows come in as plain dataclasses; the answers go out as the API's pydantic models (`schemas`):
the import goes one way only (schemas never import this module).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from services.gateway.cells import allowed_actions, cell_status, is_conflict, row_actions
from services.gateway.names import Names, job_site, label
from services.gateway.schemas import (
    CellDetails,
    Column,
    DetailsRow,
    EntryDetail,
    EntryStatus,
    ErrorGroup,
    Fix,
    HistoryItem,
    ManpowerRow,
    ProductionQuantityRow,
    Reason,
    TimecardRow,
)
from shared import labels
from shared.events import Module, ProcoreEntity, ReferenceKind
from shared.mapping_rules import PROJECT_SCOPED

# --- details ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryRecord:
    """One row of the aggregator's `entries` table, as far as the gateway needs it."""

    entry_id: UUID
    module: Module
    job_site_id: str
    work_date: date
    dims: dict[str, str | None]
    content: dict[str, str] | None
    status: EntryStatus
    errors: tuple[str, ...] = ()
    last_error: str | None = None
    version: int = 1
    procore_id: int | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    published_payload: dict[str, Any] | None = None
    """What our last publish wrote to Procore (the Procore-shaped fields)."""
    procore_updated_at: datetime | None = None
    """Procore's `updated_at` after our last publish: the baseline for "changed in Procore"."""


@dataclass(frozen=True)
class CellRead:
    """What the details of one cell are built from (`build_details`), read in one statement: its entries, the names
    they show, the Procore payroll type of each mapped pay ID among them, and the job site's Procore project."""

    entries: list[EntryRecord]
    names: Names
    payroll_items: Mapping[str, str]
    projects: Mapping[str, int]


@dataclass(frozen=True)
class HistoryRecord:
    at: datetime
    action: str
    request_id: UUID | None = None
    requested_by: str | None = None
    outcome: str | None = None
    message: str | None = None
    trace_id: str | None = None
    """The trace the step was recorded in (32 hex digits), when it was recorded in one."""


def trace_url(template: str, trace_id: str | None) -> str | None:
    """The trace viewer's page of `trace_id` (TRACE_URL_TEMPLATE with `{trace_id}`), None without either."""
    return template.replace("{trace_id}", trace_id) if template and trace_id else None


COLUMNS: dict[Module, list[Column]] = {
    module: [Column(key=key, label=text) for key, text in labels.COLUMNS[module.value].items()] for module in Module
}
"""Exactly the fields of the help article's details tables, in its order."""


NAMED_DIMS: dict[str, ReferenceKind] = {
    "company_id": ReferenceKind.COMPANY,
    "employee_id": ReferenceKind.EMPLOYEE,
    "pay_class_id": ReferenceKind.PAY_CLASS,
    "cost_code_id": ReferenceKind.COST_CODE,
    "pay_id": ReferenceKind.PAY_ID,
}
"""The dimensions whose names the details show (besides the job site's), with the kind of name each is."""


def names_needed(entries: Iterable[EntryRecord]) -> set[tuple[str, str]]:
    """The (kind, id) pairs whose names the details of these entries show."""
    wanted: set[tuple[str, str]] = set()
    for e in entries:
        wanted.add((ReferenceKind.JOB_SITE.value, e.job_site_id))
        for dim, kind in NAMED_DIMS.items():
            value = e.dims.get(dim)
            if value is not None:
                wanted.add((kind.value, value))
    return wanted


def _decimal(content: Mapping[str, str] | None, key: str) -> Decimal | None:
    if content is None or content.get(key) is None:
        return None
    return Decimal(content[key])


ENTITY_DIM: dict[ProcoreEntity, str] = {
    ProcoreEntity.VENDOR: "company_id",
    ProcoreEntity.EMPLOYEE: "employee_id",
    ProcoreEntity.PAYROLL_TYPE: "pay_id",
    ProcoreEntity.COST_CODE: "cost_code_id",
    ProcoreEntity.CLASSIFICATION: "pay_class_id",
}
"""The entry dimension holding the MobiClocks id a tab maps (projects map the entry's job site)."""


def reason(e: EntryRecord, text: str, projects: Mapping[str, int]) -> Reason:
    """A Non publishable reason with the mapping row that fixes it; `projects` maps job sites to their Procore
    project (cost codes are mapped per project)."""
    entity_key = labels.reason_entity(text)
    if entity_key is None:
        return Reason(text=text)
    entity = ProcoreEntity(entity_key)
    mobiclocks_id = e.job_site_id if entity is ProcoreEntity.PROJECT else e.dims.get(ENTITY_DIM[entity])
    if not mobiclocks_id:
        return Reason(text=text)
    project = projects.get(e.job_site_id) if entity in PROJECT_SCOPED else None
    return Reason(
        text=text,
        fix=Fix(entity=entity.value, mobiclocks_id=mobiclocks_id, project_id=str(project) if project else None),
    )


def details_row(
    e: EntryRecord, names: Names, payroll_items: Mapping[str, str], projects: Mapping[str, int] | None = None
) -> DetailsRow:
    """One row of the details table; `payroll_items` maps pay IDs to the name of their mapped Procore payroll type,
    `projects` job sites to their mapped Procore project."""
    conflict = is_conflict(e.status, e.last_error)
    common: dict[str, Any] = {
        "entry_id": e.entry_id,
        "status": e.status,
        "last_error": e.last_error,
        "errors": [reason(e, text, projects or {}) for text in e.errors],
        "conflict": conflict,
        "advice": labels.CONFLICT_ADVICES[e.last_error] if conflict and e.last_error else None,
        "actions": row_actions(e.status, e.last_error),
    }
    d, c = e.dims, e.content
    if e.module is Module.MANPOWER:
        company_id = d.get("company_id") or ""
        manpower = _decimal(c, "manpower")
        return ManpowerRow(
            **common,
            company_id=company_id,
            company_name=label(names, ReferenceKind.COMPANY, company_id) or company_id,
            crew_tag=d.get("crew_tag"),
            total_hours=_decimal(c, "total_hours"),
            manpower=int(manpower) if manpower is not None else None,
            average=_decimal(c, "average_hours"),
        )
    if e.module is Module.TIMECARD:
        employee_id = d.get("employee_id") or ""
        pay_id = d.get("pay_id") or ""
        return TimecardRow(
            **common,
            employee_id=employee_id,
            employee=label(names, ReferenceKind.EMPLOYEE, employee_id) or employee_id,
            pay_class=label(names, ReferenceKind.PAY_CLASS, d.get("pay_class_id")),
            cost_code=label(names, ReferenceKind.COST_CODE, d.get("cost_code_id")),
            pay_id=label(names, ReferenceKind.PAY_ID, pay_id) or pay_id,
            payroll_item=payroll_items.get(pay_id),
            timelog_duration=_decimal(c, "hours"),
        )
    cost_code_id = d.get("cost_code_id") or ""
    return ProductionQuantityRow(
        **common,
        cost_code_id=cost_code_id,
        cost_code=label(names, ReferenceKind.COST_CODE, cost_code_id) or cost_code_id,
        um=d.get("unit_of_measure") or "",
        unit=_decimal(c, "units"),
    )


def _row_order(row: DetailsRow) -> tuple[str, ...]:
    if isinstance(row, ManpowerRow):
        return (row.company_name.lower(), row.crew_tag or "")
    if isinstance(row, TimecardRow):
        return (row.employee.lower(), row.pay_id, row.cost_code or "", row.pay_class or "")
    return (row.cost_code.lower(), row.um)


def error_groups(entries: Iterable[EntryRecord], projects: Mapping[str, int] | None = None) -> list[ErrorGroup]:
    """The Errors panel: each distinct reason a Non publishable entry cannot go out, its fix, and its rows."""
    affected: dict[str, list[UUID]] = {}
    fixes: dict[str, Reason] = {}
    for e in entries:
        if e.status is EntryStatus.NON_PUBLISHABLE:
            for message in dict.fromkeys(e.errors):
                affected.setdefault(message, []).append(e.entry_id)
                fixes.setdefault(message, reason(e, message, projects or {}))
    return [ErrorGroup(message=m, text=m, fix=fixes[m].fix, entry_ids=ids) for m, ids in sorted(affected.items())]


def build_details(
    module: Module,
    job_site_id: str,
    work_date: date,
    entries: Sequence[EntryRecord],
    names: Names,
    payroll_items: Mapping[str, str],
    projects: Mapping[str, int] | None = None,
) -> CellDetails:
    counts: dict[EntryStatus, int] = defaultdict(int)
    for e in entries:
        counts[e.status] += 1
    conflicts = sum(1 for e in entries if is_conflict(e.status, e.last_error))
    rows = sorted((details_row(e, names, payroll_items, projects) for e in entries), key=_row_order)
    return CellDetails(
        module=module,
        job_site=job_site(names, job_site_id),
        work_date=work_date,
        status=cell_status(counts),
        counts=dict(counts),
        actions=allowed_actions(counts, conflicts),
        columns=COLUMNS[module],
        rows=rows,
        errors=error_groups(entries, projects),
    )


def build_entry_detail(
    e: EntryRecord,
    names: Names,
    payroll_items: Mapping[str, str],
    history: Iterable[HistoryRecord],
    projects: Mapping[str, int] | None = None,
    trace_url_template: str = "",
) -> EntryDetail:
    return EntryDetail(
        entry_id=e.entry_id,
        module=e.module,
        job_site=job_site(names, e.job_site_id),
        work_date=e.work_date,
        status=e.status,
        version=e.version,
        procore_id=e.procore_id,
        updated_at=e.updated_at,
        dims=e.dims,
        content=e.content,
        row=details_row(e, names, payroll_items, projects),
        history=[
            HistoryItem(
                at=h.at,
                action=h.action,
                request_id=h.request_id,
                requested_by=h.requested_by,
                outcome=h.outcome,
                message=h.message,
                trace_id=h.trace_id,
                trace_url=trace_url(trace_url_template, h.trace_id),
            )
            for h in history
        ],
    )
