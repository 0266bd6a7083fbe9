"""What the HTTP API answers: pydantic read models, built by `details`, `handlers` and `mapping_handlers` and
serialized by FastAPI (the week view is built as plain dicts by `dashboard`; `Dashboard` documents it).

Imports nothing of the gateway: the pure modules import these models, never the other way round.
Over 400 lines on purpose: every answer's shape in one place, the source of docs/contracts/openapi-gateway.json.

Quantities and hours are decimals, serialized as strings ("12.50") so nothing is lost in JSON.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal, Required
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict

from shared.entry_status import EntryStatus
from shared.events import Module, PublishAction


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


class GridJobSite(TypedDict):
    job_site_id: str
    name: str
    number: str | None


class GridCell(TypedDict, total=False):
    """One job site on one day, as compact as the grid shows it: only what is there (a missing key is zero or
    does not apply to the module); the job site and day are the row's and the `days` slot's."""

    status: Required[EntryStatus]
    """The cell status: the first of `status_precedence` any of its entries has."""
    counts: Required[dict[str, int]]
    """Entries per status (`EntryStatus` values, only statuses present): a cell holding several shows them all."""
    actions: Required[list[PublishAction]]
    conflicts: int
    """Of the Failed entries, those changed in Procore since they were published (only Force publish helps); absent
    when none."""
    manpower: int
    """Manpower: head count summed over the crews."""
    total_hours: str
    """Manpower: hours worked by all crews (a decimal string)."""
    timecards: int
    """Timecard: number of timecards."""
    quantities: list[tuple[str, str, str]]
    """Production quantity: `[cost_code_id, unit, quantity]` per tracked cost code (its name in
    `Dashboard.cost_codes`), sorted by cost code name and unit; quantity is a decimal string."""


class DashboardRow(TypedDict):
    job_site: GridJobSite
    days: list[GridCell | None]
    """Seven slots, aligned with `Dashboard.days`; null where the job site has no entries that day."""


class Dashboard(TypedDict):
    """One module's week: a page of job sites (sorted by name) by 7 days."""

    module: Module
    week_start: date
    days: list[date]
    status_filter: list[EntryStatus]
    status_precedence: list[EntryStatus]
    """How a cell's status is chosen: the first of these that any of its entries has."""
    rows: list[DashboardRow]
    cost_codes: dict[str, str]
    """Production quantity: the name of every cost code the cells list (empty for the other modules)."""
    total_rows: int
    """Job sites with entries this week (matching `q` and the status filter): `rows` is `offset`… of them."""
    offset: int
    limit: int | None
    """At most this many rows (null: all)."""
    q: str
    """The job site name filter applied ("" for none)."""


class Column(View):
    key: str
    label: str


class Fix(View):
    """The Data mapping row that fixes a Non publishable reason: `#mapping?tab=<entity>&row=<mobiclocks_id>`
    (`&project=<project_id>` for cost codes, which are mapped per Procore project)."""

    entity: str
    mobiclocks_id: str
    project_id: str | None = None


class Reason(View):
    """Why an entry cannot be published, and the mapping row that fixes it (null when no mapping does)."""

    text: str
    fix: Fix | None = None


class RowBase(View):
    entry_id: UUID
    status: EntryStatus
    last_error: str | None = None
    """Why the last publish failed (Procore's message, or that the record changed in Procore)."""
    errors: list[Reason] = []
    conflict: bool = False
    """Failed because the record was changed in Procore since it was published: Republish would fail again."""
    advice: str | None = None
    """What to do about this entry, in words (set for conflicts)."""
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
    """One reason entries are Non publishable, the mapping row that fixes it, and the rows it affects."""

    message: str
    """The same sentence as `text` (kept for older clients)."""
    text: str
    fix: Fix | None
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
    trace_id: str | None = None
    """The trace this step was recorded in (32 hex digits; search for it in the trace viewer)."""
    trace_url: str | None = None
    """The trace viewer's page of that trace, when the gateway's TRACE_URL_TEMPLATE is set."""


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


SetupStep = Literal["connection", "company", "modules"]


class Setup(View):
    procore_company_id: int | None
    enabled_modules: list[Module]
    two_way: bool
    auto_publish: dict[Module, int] = {}
    """Auto-publish, per module: minutes after an entry last changed before its To do or Updated state is published
    automatically (no module: the manual flow only, the default)."""
    missing: list[SetupStep] = []
    """What Setup still needs before anything can be published, in Setup's order (empty: complete)."""
    manual_mappings: int = 0
    """Mappings made by hand; turning two-way on replaces them with the linked ids (warn first)."""


class Accepted(View):
    """A command was handed to the broker; its effect shows up in the read model shortly."""

    command_id: UUID
    eligible_entries: int | None = None
    """Publish commands: how many entries in scope the action applies to right now."""


class PreviewEntry(View):
    """One entry a force publish would write, ours beside Procore's record as Procore holds it now."""

    entry_id: UUID
    label: str
    """Human: day, job site and the entry's own names (company and crew, employee and cost code, …)."""
    status: EntryStatus
    effect: Literal["create", "overwrite", "recreate", "delete"]
    """What the force publish does in Procore: create a new record, overwrite ours, re-create one deleted in
    Procore, or delete the record (a Deleted entry)."""
    ours: dict[str, str | None]
    """Procore field → the value we would write (labels: `procore_fields` of /api/labels)."""
    procore: dict[str, str | None] | None
    """The same fields as Procore holds them now; null when there is no record (never published, or deleted)."""
    changed_in_procore: bool
    """Procore's record changed (or was deleted) since we published it: force publish overwrites someone's edit."""
    procore_updated_at: datetime | None


class ForcePublishPreview(View):
    preview_id: str
    """Send it with `action: force_publish` to the publish endpoint: it covers exactly these entries, until
    `expires_at`."""
    expires_at: datetime
    entries: list[PreviewEntry]
    changed_in_procore: int
    """How many of the entries changed in Procore since they were published."""


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


class WebhookStatus(View):
    """Procore's webhooks for the chosen company: edits made in Procore show on entries as soon as Procore
    delivers them; a periodic reconcile catches what deliveries missed."""

    registered_at: datetime
    last_delivery_at: datetime | None = None
    reconciled_until: datetime | None = None


class ProcoreConnection(View):
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
    webhooks: WebhookStatus | None = None
    """None: no webhooks for the chosen company (not registered yet, or not configured)."""


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
    warning: str | None = None
    """Employees: the mapped person is missing from the Procore directory of a project where they have timecards
    (as of the last Employees sync)."""


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
