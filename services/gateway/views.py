"""What the HTTP API answers: pydantic read models, built by `domain` and serialized by FastAPI.

Quantities and hours are decimals, serialized as strings ("12.50") so nothing is lost in JSON.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.events import Module, PublishAction


class EntryStatus(StrEnum):
    """The aggregator's entry statuses (its `entries.status` column)."""

    TODO = "todo"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    UPDATED = "updated"
    FAILED = "failed"
    DELETED = "deleted"
    NON_PUBLISHABLE = "non_publishable"


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class Me(View):
    user_id: str
    account_id: str
    permissions: list[str]


class JobSite(View):
    job_site_id: str
    name: str
    number: str | None = None


class CostCodeQuantity(View):
    cost_code_id: str
    cost_code: str
    unit: str
    quantity: Decimal


class Cell(View):
    """One job site on one day: the module's numbers, entries per status, the cell status and actions."""

    job_site_id: str
    work_date: date
    status: EntryStatus
    entries: int
    counts: dict[EntryStatus, int]
    actions: list[PublishAction]
    manpower: int | None = None
    """Manpower: head count summed over the crews."""
    total_hours: Decimal | None = None
    """Manpower: hours worked by all crews."""
    timecards: int | None = None
    """Timecard: number of timecards."""
    quantities: list[CostCodeQuantity] | None = None
    """Production quantity: each tracked cost code with its quantity and unit."""


class DashboardRow(View):
    job_site: JobSite
    days: list[Cell | None]
    """Seven slots, aligned with `Dashboard.days`; null where the job site has no entries that day."""


class Dashboard(View):
    module: Module
    week_start: date
    days: list[date]
    status_filter: list[EntryStatus]
    status_precedence: list[EntryStatus]
    """How a cell's status is chosen: the first of these that any of its entries has."""
    rows: list[DashboardRow]


class Column(View):
    key: str
    label: str


class RowBase(View):
    entry_id: UUID
    status: EntryStatus
    last_error: str | None = None
    errors: list[str] = []
    actions: list[PublishAction] = []


class ManpowerRow(RowBase):
    company_id: str
    company_name: str
    crew_tag: str | None
    total_hours: Decimal | None
    manpower: int | None
    average: Decimal | None


class TimecardRow(RowBase):
    employee_id: str
    employee: str
    pay_class: str | None
    cost_code: str | None
    pay_id: str
    payroll_item: str | None
    """The Procore payroll type mapped to the pay ID; null while it is not mapped."""
    timelog_duration: Decimal | None
    """Hours."""


class ProductionQuantityRow(RowBase):
    cost_code_id: str
    cost_code: str
    um: str
    unit: Decimal | None


DetailsRow = ManpowerRow | TimecardRow | ProductionQuantityRow


class ErrorGroup(View):
    """One reason entries are Non publishable and the rows it affects."""

    message: str
    entry_ids: list[UUID]


class CellDetails(View):
    module: Module
    job_site: JobSite
    work_date: date
    status: EntryStatus
    counts: dict[EntryStatus, int]
    actions: list[PublishAction]
    columns: list[Column]
    rows: list[DetailsRow]
    errors: list[ErrorGroup]


class HistoryItem(View):
    at: datetime
    action: str
    request_id: UUID | None
    requested_by: str | None
    outcome: str | None
    message: str | None


class EntryDetail(View):
    entry_id: UUID
    module: Module
    job_site: JobSite
    work_date: date
    status: EntryStatus
    version: int
    procore_id: int | None
    updated_at: datetime
    dims: dict[str, str | None]
    content: dict[str, str] | None
    row: DetailsRow
    history: list[HistoryItem]


class Setup(View):
    procore_company_id: int | None
    enabled_modules: list[Module]
    two_way: bool


class Accepted(View):
    """A command was handed to the broker; its effect shows up in the read model shortly."""

    command_id: UUID
    eligible_entries: int | None = None
    """Publish commands: how many entries in scope the action applies to right now."""


class Token(View):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
