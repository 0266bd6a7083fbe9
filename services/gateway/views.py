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


# --- setup: the Procore connection -----------------------------------------------------


class ProcoreCompany(View):
    """A Procore company bound to the account: it proved it controls it (a user's consent, or its own service
    account). Companies bound to other accounts are never listed."""

    procore_company_id: int
    name: str
    is_active: bool
    proof: str
    """user_consent or customer_credentials"""


class Connection(View):
    """The account's Procore connection as the mapping service keeps it (never the tokens themselves)."""

    status: str
    """not_connected · connected · needs_reauthorization · disconnected"""
    grant: str | None = None
    """authorization_code (a user's OAuth consent) or client_credentials (the customer's own service account)."""
    message: str | None = None
    connected_by: str | None = None
    connected_at: datetime | None = None
    refreshed_at: datetime | None = None
    expires_at: datetime | None = None
    companies: list[ProcoreCompany] = []
    procore_company_id: int | None = None
    enabled_modules: list[Module] = []
    two_way: bool = False


class AuthorizeUrl(View):
    """Open it in this browser: the callback is accepted only in the browser that asked (an HttpOnly cookie)."""

    authorize_url: str
    expires_in: int


# --- data mapping ----------------------------------------------------------------------


class SyncInfo(View):
    procore_project_id: int | None
    synced_at: datetime
    total: int
    added: int
    updated: int
    gone: int


class AutoMapReport(View):
    ran_at: datetime
    requested_by: str | None
    overwrite_manual: bool
    mapped: int
    skipped: int
    ambiguous: int
    details: list[dict[str, object]] = []


class Tab(View):
    entity: str
    label: str
    mobiclocks_label: str
    auto_map: bool
    """Auto-map is offered (the module has a Number field); `number_field` is the Procore field compared."""
    number_field: str | None
    many_to_one: bool
    """Several MobiClocks rows may map to one Procore entity on this tab."""
    needs_project: bool
    """Shows nothing until at least one project is mapped."""


class ProjectOption(View):
    procore_project_id: int
    name: str


class MappingOverview(View):
    two_way: bool
    message: str | None
    tabs: list[Tab]
    mapped_projects: list[ProjectOption]


class ProcoreOption(View):
    procore_id: int
    name: str
    number: str | None


class MappingRow(View):
    mobiclocks_id: str
    name: str
    number: str | None
    procore_id: int | None
    procore_name: str | None
    source: str | None
    """manual · auto · two_way"""
    broken_reason: str | None
    """Set when the mapped Procore entity disappeared from Procore: the row counts as unmapped."""


class MappingTab(View):
    tab: Tab
    two_way: bool
    procore_project_id: int | None
    message: str | None
    """Why there are no rows (no project mapped yet, two-way account), when that is the case."""
    rows: list[MappingRow]
    procore_options: list[ProcoreOption]
    last_sync: SyncInfo | None
    last_auto_map: AutoMapReport | None


class CommandOutcome(View):
    command_id: UUID
    status: str
    """pending (not handled yet) · done · rejected · failed"""
    command_type: str | None = None
    message: str | None = None
    details: dict[str, object] | None = None
    finished_at: datetime | None = None
