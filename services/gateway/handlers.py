"""Gateway use cases: queries on the read model and commands sent as events.

Each takes the signed-in `Principal` and scopes everything to its account; commands check
the permission they need first. Queries take a connection inside a read-only transaction
the caller opened; commands take the `CommandBus`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Protocol
from uuid import UUID

import asyncpg

from services.gateway import domain
from services.gateway.adapters import read_model
from services.gateway.domain import NotFound, Permission, Principal, require
from services.gateway.mapping_rules import refuse_two_way
from services.gateway.views import Accepted, CellDetails, Dashboard, EntryDetail, EntryStatus, Setup
from shared.events import (
    CellScope,
    ConfigureSetup,
    DateRangeScope,
    EntriesScope,
    MappingCommand,
    Module,
    ProcoreEntity,
    PublishAction,
    PublishEntries,
    ReferenceKind,
    SetMapping,
)


class CommandBus(Protocol):
    async def send_publish(self, command: PublishEntries, key: str) -> None: ...

    async def send_mapping(self, command: MappingCommand, key: str) -> None: ...


# --- queries ---------------------------------------------------------------------------


async def dashboard(
    conn: asyncpg.Connection,
    who: Principal,
    module: Module,
    week_start: date,
    statuses: Sequence[EntryStatus],
) -> Dashboard:
    """One module's week: job sites by days with numbers, status and actions per cell."""
    week_end = week_start + timedelta(days=6)
    groups = await read_model.status_groups(conn, who.account_id, module, week_start, week_end, statuses)
    quantities = (
        await read_model.quantity_groups(conn, who.account_id, week_start, week_end, statuses)
        if module is Module.PRODUCTION_QUANTITY
        else []
    )
    wanted = {(ReferenceKind.JOB_SITE.value, g.job_site_id) for g in groups}
    wanted |= {(ReferenceKind.COST_CODE.value, q.cost_code_id) for q in quantities}
    names = await read_model.reference_names(conn, who.account_id, wanted)
    return domain.build_dashboard(module, week_start, statuses, groups, quantities, names)


async def cell_details(
    conn: asyncpg.Connection, who: Principal, module: Module, job_site_id: str, work_date: date
) -> CellDetails:
    """The details table of one cell, with the Errors panel."""
    entries = await read_model.cell_entries(conn, who.account_id, module, job_site_id, work_date)
    if not entries:
        raise NotFound(f"no {module.value} entries for job site {job_site_id!r} on {work_date.isoformat()}")
    names = await read_model.reference_names(conn, who.account_id, domain.names_needed(entries))
    pay_ids = {e.dims["pay_id"] for e in entries if e.dims.get("pay_id")}
    payroll = await read_model.payroll_items(conn, who.account_id, (p for p in pay_ids if p))
    return domain.build_details(module, job_site_id, work_date, entries, names, payroll)


async def entry_detail(conn: asyncpg.Connection, who: Principal, entry_id: UUID) -> EntryDetail:
    """One entry with its publish history."""
    found = await read_model.entry(conn, who.account_id, entry_id)
    if found is None:
        raise NotFound(f"no entry {entry_id}")
    names = await read_model.reference_names(conn, who.account_id, domain.names_needed([found]))
    pay_id = found.dims.get("pay_id")
    payroll = await read_model.payroll_items(conn, who.account_id, [pay_id] if pay_id else [])
    history = await read_model.publish_history(conn, entry_id)
    return domain.build_entry_detail(found, names, payroll, history)


async def current_setup(conn: asyncpg.Connection, who: Principal) -> Setup:
    """The account's Procore setup as the aggregator last saw it."""
    return await read_model.setup(conn, who.account_id)


# --- commands --------------------------------------------------------------------------


async def request_publish(
    conn: asyncpg.Connection,
    bus: CommandBus,
    who: Principal,
    module: Module,
    action: PublishAction,
    scope: CellScope | EntriesScope | DateRangeScope,
) -> Accepted:
    """Publish, republish or force publish a cell, some entries, or a date range of one module."""
    require(who, Permission.PUBLISH)
    job_site_id: str | None = None
    if isinstance(scope, EntriesScope):
        sites = await read_model.job_sites_of_entries(conn, who.account_id, module, scope.entry_ids)
        missing = [str(i) for i in scope.entry_ids if i not in sites]
        if missing:
            raise NotFound(f"no {module.value} entries with ids {', '.join(missing[:20])}")
        if len(set(sites.values())) == 1:
            job_site_id = next(iter(sites.values()))
    elif isinstance(scope, CellScope):
        job_site_id = scope.job_site_id
    counts = await read_model.status_counts_in_scope(conn, who.account_id, module, scope)
    if isinstance(scope, CellScope) and not counts:
        raise NotFound(f"no {module.value} entries for job site {scope.job_site_id!r} on {scope.work_date.isoformat()}")
    eligible = sum(n for s, n in counts.items() if s in domain.ELIGIBLE_STATUSES[action])
    command = PublishEntries(
        account_id=who.account_id,
        module=module,
        action=action,
        scope=scope,
        requested_by=who.user_id,
        permissions=sorted(who.permissions),  # the aggregator checks procore.publish again
    )
    await bus.send_publish(command, domain.publish_key(who.account_id, job_site_id))
    return Accepted(command_id=command.event_id, eligible_entries=eligible)


async def configure_setup(
    bus: CommandBus,
    who: Principal,
    procore_company_id: int | None,
    enabled_modules: Sequence[Module],
    two_way: bool,
) -> Accepted:
    """Choose the Procore company, the modules to publish and the two-way option."""
    require(who, Permission.SETUP)
    command = ConfigureSetup(
        account_id=who.account_id,
        procore_company_id=procore_company_id,
        enabled_modules=list(dict.fromkeys(enabled_modules)),
        two_way=two_way,
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
    domain.check_mapping_scope(entity, procore_project_id)
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
