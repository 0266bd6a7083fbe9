"""Gateway use cases: queries on the read model and commands sent as events.

Each takes the signed-in `Principal` and scopes everything to its account; commands check
the permission they need first. Queries take the read contracts (`EntryReads`: `adapters.read_contracts.ReadContracts`
over a connection in a read-only transaction the caller opened; a fake in unit tests); commands take the `CommandBus`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, timedelta
from typing import Any, Protocol
from uuid import UUID

from services.gateway import force_preview
from services.gateway.adapters.mapping_model import MappingSetup
from services.gateway.cells import ELIGIBLE_STATUSES, publish_key
from services.gateway.dashboard import QuantityGroup, SitePage, StatusGroup, build_dashboard, page_of_sites
from services.gateway.details import (
    CellRead,
    EntryRecord,
    HistoryRecord,
    build_details,
    build_entry_detail,
    names_needed,
)
from services.gateway.failures import NotFound
from services.gateway.force_preview import Reviewed
from services.gateway.mapping_rules import check_mapping_scope, refuse_two_way, setup_missing
from services.gateway.names import Name
from services.gateway.permissions import require
from services.gateway.schemas import (
    Accepted,
    CellDetails,
    Dashboard,
    EntryDetail,
    EntryStatus,
    ForcePublishPreview,
    Setup,
)
from services.gateway.tokens import Principal
from shared import labels
from shared.events import (
    CellScope,
    ConfigureSetup,
    DateRangeScope,
    EntriesScope,
    MappingCommand,
    Module,
    Permission,
    ProcoreEntity,
    PublishAction,
    PublishEntries,
    ReferenceKind,
    SetMapping,
)


class CommandBus(Protocol):
    async def send_publish(self, command: PublishEntries, key: str) -> None: ...

    async def send_mapping(self, command: MappingCommand, key: str) -> None: ...


class EntryReads(Protocol):
    """The read contracts the query use cases read (`adapters.read_contracts.ReadContracts`), in one read-only
    transaction."""

    async def plan_for_week(self) -> None: ...
    async def week_job_sites(
        self, account_id: str, module: Module, date_from: date, date_to: date, statuses: Sequence[EntryStatus]
    ) -> list[str]: ...
    async def status_groups(
        self,
        account_id: str,
        module: Module,
        date_from: date,
        date_to: date,
        statuses: Sequence[EntryStatus],
        job_site_ids: Sequence[str] | None = None,
    ) -> list[StatusGroup]: ...
    async def quantity_groups(
        self,
        account_id: str,
        date_from: date,
        date_to: date,
        statuses: Sequence[EntryStatus],
        job_site_ids: Sequence[str] | None = None,
    ) -> list[QuantityGroup]: ...
    async def reference_names(
        self, account_id: str, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], Name]: ...
    async def mapped_projects(self, account_id: str, job_site_ids: Iterable[str]) -> dict[str, int]: ...
    async def payroll_items(self, account_id: str, pay_ids: Iterable[str]) -> dict[str, str]: ...
    async def cell(self, account_id: str, module: Module, job_site_id: str, work_date: date) -> CellRead: ...
    async def entry(self, account_id: str, entry_id: UUID) -> EntryRecord | None: ...
    async def publish_history(self, entry_id: UUID) -> list[HistoryRecord]: ...
    async def status_counts_in_scope(
        self, account_id: str, module: Module, scope: CellScope | EntriesScope | DateRangeScope
    ) -> dict[EntryStatus, int]: ...
    async def entries_in_scope(
        self,
        account_id: str,
        module: Module,
        scope: CellScope | EntriesScope | DateRangeScope,
        statuses: Iterable[EntryStatus],
        limit: int,
    ) -> list[EntryRecord]: ...
    async def reviewed_in_scope(
        self,
        account_id: str,
        module: Module,
        scope: CellScope | EntriesScope | DateRangeScope,
        statuses: Iterable[EntryStatus],
    ) -> list[Reviewed]: ...
    async def job_sites_of_entries(
        self, account_id: str, module: Module, entry_ids: Sequence[UUID]
    ) -> dict[UUID, str]: ...
    async def aggregator_setup(self, account_id: str) -> Setup: ...
    async def mapping_ready(self) -> bool: ...
    async def mapping_setup(self, account_id: str) -> MappingSetup | None: ...
    async def procore_connection(self, account_id: str) -> dict[str, Any] | None: ...
    async def manual_mappings(self, account_id: str) -> int: ...


# --- queries ---------------------------------------------------------------------------


async def dashboard(
    reads: EntryReads,
    who: Principal,
    module: Module,
    week_start: date,
    statuses: Sequence[EntryStatus],
    q: str = "",
    offset: int = 0,
    limit: int | None = None,
) -> Dashboard:
    """One module's week: job sites by days with numbers, status and actions per cell. With `limit` or `q`, only
    that page of job sites (sorted by name) is read: the job sites of the week come first (an index-only read),
    then the cells of the page's job sites alone."""
    week_end = week_start + timedelta(days=6)
    await reads.plan_for_week()
    page: SitePage | None = None
    sites: list[str] | None = None
    if limit is not None or q.strip() or offset:
        site_ids = await reads.week_job_sites(who.account_id, module, week_start, week_end, statuses)
        site_names = await reads.reference_names(who.account_id, {(ReferenceKind.JOB_SITE.value, s) for s in site_ids})
        page = page_of_sites(site_ids, site_names, q, offset, limit)
        sites = [s["job_site_id"] for s in page.sites]
    groups = await reads.status_groups(who.account_id, module, week_start, week_end, statuses, sites)
    quantities = (
        await reads.quantity_groups(who.account_id, week_start, week_end, statuses, sites)
        if module is Module.PRODUCTION_QUANTITY
        else []
    )
    wanted = {(ReferenceKind.COST_CODE.value, q.cost_code_id) for q in quantities}
    if page is None:
        wanted |= {(ReferenceKind.JOB_SITE.value, g.job_site_id) for g in groups}
    names = await reads.reference_names(who.account_id, wanted)
    return build_dashboard(module, week_start, statuses, groups, quantities, names, page)


async def _payroll_items(reads: EntryReads, account_id: str, entries: Sequence[EntryRecord]) -> dict[str, str]:
    pay_ids = {p for e in entries if (p := e.dims.get("pay_id"))}
    return await reads.payroll_items(account_id, pay_ids) if pay_ids else {}


async def cell_details(
    reads: EntryReads, who: Principal, module: Module, job_site_id: str, work_date: date
) -> CellDetails:
    """The details table of one cell, with the Errors panel (each reason linked to the mapping row fixing it)."""
    cell = await reads.cell(who.account_id, module, job_site_id, work_date)
    if not cell.entries:
        raise NotFound(f"No {labels.MODULES[module.value]} entries for this job site on {work_date.isoformat()}")
    return build_details(module, job_site_id, work_date, cell.entries, cell.names, cell.payroll_items, cell.projects)


async def entry_detail(reads: EntryReads, who: Principal, entry_id: UUID, trace_url_template: str = "") -> EntryDetail:
    """One entry with its publish history."""
    found = await reads.entry(who.account_id, entry_id)
    if found is None:
        raise NotFound(f"no entry {entry_id}")
    names = await reads.reference_names(who.account_id, names_needed([found]))
    payroll = await _payroll_items(reads, who.account_id, [found])
    projects = await reads.mapped_projects(who.account_id, [found.job_site_id])
    history = await reads.publish_history(entry_id)
    return build_entry_detail(found, names, payroll, history, projects, trace_url_template)


async def current_setup(reads: EntryReads, who: Principal) -> Setup:
    """The account's Procore setup as the mapping service holds it (the source of truth, committed with the "Setup
    saved" outcome and announced by the live `mapping` event {what: "setups"}; the aggregator's copy only until the
    mapping service has published its read contract), what is still missing before anything can be published, and
    how many manual mappings turning two-way on would replace."""
    saved = await reads.mapping_setup(who.account_id)
    if saved is not None:
        setup = Setup(
            procore_company_id=saved.procore_company_id,
            enabled_modules=saved.enabled_modules,
            two_way=saved.two_way,
            auto_publish=saved.auto_publish,
        )
    elif await reads.mapping_ready():
        setup = Setup(procore_company_id=None, enabled_modules=[], two_way=False)
    else:
        setup = await reads.aggregator_setup(who.account_id)
    procore_link = await reads.procore_connection(who.account_id)
    connected = procore_link is not None and procore_link.get("status") == "connected"
    manual = await reads.manual_mappings(who.account_id)
    return setup.model_copy(update={"missing": setup_missing(setup, connected=connected), "manual_mappings": manual})


# --- commands --------------------------------------------------------------------------


class ProcoreRecords(Protocol):
    async def procore_records(
        self, account_id: str, company_id: int, refs: list[tuple[Module, int, int]]
    ) -> dict[int, dict[str, Any] | None]: ...


async def force_publish_preview(
    snapshot: Callable[[], AbstractAsyncContextManager[EntryReads]],
    procore: ProcoreRecords,
    who: Principal,
    module: Module,
    scope: CellScope | EntriesScope | DateRangeScope,
    key: bytes,
) -> ForcePublishPreview:
    """What a force publish of `scope` would write, beside Procore's records read from Procore now, and the signed
    preview_id the force publish must send. The database connection is given back before Procore is called."""
    require(who, Permission.PUBLISH)
    statuses = ELIGIBLE_STATUSES[PublishAction.FORCE_PUBLISH]
    async with snapshot() as reads:  # one read-only, repeatable-read transaction
        # One more than a preview shows, so "too many" is known without counting the rest.
        limit = force_preview.MAX_PREVIEW_ENTRIES + 1
        entries = await reads.entries_in_scope(who.account_id, module, scope, statuses, limit)
        if not entries:
            module_name = labels.MODULES[module.value]
            raise NotFound(f"Nothing to force publish here: no {module_name} entries that can be written")
        published = force_preview.to_read(entries)
        names = await reads.reference_names(who.account_id, names_needed(entries))
        projects = await reads.mapped_projects(who.account_id, {e.job_site_id for e in published})
        company = (await reads.aggregator_setup(who.account_id)).procore_company_id
    refs = [
        (module, projects[e.job_site_id], e.procore_id)
        for e in published
        if e.procore_id is not None and e.job_site_id in projects and company is not None
    ]
    records = await procore.procore_records(who.account_id, company, refs) if refs and company is not None else {}
    # Records that could not be looked up (no project mapped for the job site, or no company chosen): their force
    # publish fails with that reason before anything is written.
    read = {i for _, _, i in refs}
    unread = frozenset(e.entry_id for e in published if e.procore_id not in read)
    shown = force_preview.reviewed(entries)
    preview_id, expires_at = force_preview.issue_preview_id(who.account_id, module, shown, key)
    return force_preview.build_preview(entries, names, records, preview_id, expires_at, unread)


async def request_publish(
    reads: EntryReads,
    bus: CommandBus,
    who: Principal,
    module: Module,
    action: PublishAction,
    scope: CellScope | EntriesScope | DateRangeScope,
    preview_id: str | None = None,
    preview_key: bytes = b"",
) -> Accepted:
    """Publish, republish or force publish a cell, some entries, or a date range of one module. A force publish
    needs the preview_id of a preview covering exactly the entries it writes."""
    require(who, Permission.PUBLISH)
    job_site_id: str | None = None
    if isinstance(scope, EntriesScope):
        sites = await reads.job_sites_of_entries(who.account_id, module, scope.entry_ids)
        missing = [str(i) for i in scope.entry_ids if i not in sites]
        if missing:
            raise NotFound(
                f"{len(missing)} of these {labels.MODULES[module.value]} entries cannot be found: reload the page"
            )
        if len(set(sites.values())) == 1:
            job_site_id = next(iter(sites.values()))
    elif isinstance(scope, CellScope):
        job_site_id = scope.job_site_id
    counts = await reads.status_counts_in_scope(who.account_id, module, scope)
    if isinstance(scope, CellScope) and not counts:
        raise NotFound(f"No {labels.MODULES[module.value]} entries for this job site on {scope.work_date.isoformat()}")
    eligible = sum(n for s, n in counts.items() if s in ELIGIBLE_STATUSES[action])
    if action is PublishAction.FORCE_PUBLISH:
        statuses = ELIGIBLE_STATUSES[PublishAction.FORCE_PUBLISH]
        now = await reads.reviewed_in_scope(who.account_id, module, scope, statuses)
        force_preview.check_preview_id(preview_id, who.account_id, module, now, preview_key)
    command = PublishEntries(
        account_id=who.account_id,
        module=module,
        action=action,
        scope=scope,
        requested_by=who.user_id,
        permissions=sorted(who.permissions),  # the aggregator checks procore.publish again
    )
    await bus.send_publish(command, publish_key(who.account_id, job_site_id))
    return Accepted(command_id=command.event_id, eligible_entries=eligible)


async def configure_setup(
    bus: CommandBus,
    who: Principal,
    procore_company_id: int | None,
    enabled_modules: Sequence[Module],
    two_way: bool,
    auto_publish: Mapping[Module, int] | None = None,
) -> Accepted:
    """Choose the Procore company, the modules to publish, the two-way option and auto-publish (None: unchanged)."""
    require(who, Permission.SETUP)
    command = ConfigureSetup(
        account_id=who.account_id,
        procore_company_id=procore_company_id,
        enabled_modules=list(dict.fromkeys(enabled_modules)),
        two_way=two_way,
        auto_publish=None if auto_publish is None else dict(auto_publish),
        requested_by=who.user_id,
        permissions=sorted(who.permissions),
    )
    await bus.send_mapping(command, who.account_id)
    return Accepted(command_id=command.event_id)


async def set_mapping(
    bus: CommandBus,
    who: Principal,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    procore_id: int | None,
    procore_project_id: int | None,
    two_way: bool = False,
) -> Accepted:
    """Map one MobiClocks entity to a Procore entity (None clears the mapping); never in two-way accounts."""
    require(who, Permission.MAPPING)
    check_mapping_scope(entity, procore_project_id)
    refuse_two_way(two_way)
    command = SetMapping(
        account_id=who.account_id,
        entity=entity,
        mobiclocks_id=mobiclocks_id,
        procore_id=procore_id,
        procore_project_id=procore_project_id,
        requested_by=who.user_id,
        permissions=sorted(who.permissions),
    )
    await bus.send_mapping(command, who.account_id)
    return Accepted(command_id=command.event_id)
