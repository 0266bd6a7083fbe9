"""Mapping use cases: manual mapping, syncs of Procore lists (background jobs) and auto-map.

A mapping command of an account whose sync is running waits behind it, as a job of its own.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from services.mapping import domain
from services.mapping.adapters import sync_jobs
from services.mapping.adapters.changes import Change, mapping_changed
from services.mapping.adapters.mappings import current_mappings
from services.mapping.adapters.procore_entities import SyncedEntity
from services.mapping.adapters.procore_lists import names
from services.mapping.adapters.setups import StoredSetup
from services.mapping.adapters.sync_jobs import ClaimedJob
from services.mapping.domain import MOBICLOCKS_LABEL, PROCORE_LABEL, TAB_LABEL, Outcome
from services.mapping.handlers import (
    REQUIRED_PERMISSION,
    TWO_WAY_REFUSAL,
    FinishJob,
    Rejected,
    record_done,
    record_done_alone,
    settle,
)
from services.mapping.ports import CommandDeps, MappingStore
from services.mapping.reference_events import adopt_two_way_links
from services.mapping.sync_jobs import Progress
from shared import labels
from shared.events import (
    MOBICLOCKS_KIND_OF,
    AutoMap,
    ProcoreEntity,
    SetMapping,
    SyncProcoreEntities,
)

log = logging.getLogger(__name__)


async def _queued_behind_sync(deps: CommandDeps, cmd: SetMapping | AutoMap) -> bool:
    """While a sync of the account runs in the background, a mapping command of the account waits behind it (as a
    job of its own, run in order): it is checked against the list the sync brings, as if handled after it."""
    async with deps.stores.reading() as store:
        if not await store.has_open_job(cmd.account_id):
            return False
        command = cmd.model_dump(mode="json")
        await store.enqueue_job(cmd.event_id, cmd.account_id, cmd.entity.value, command, cmd.requested_by)
    return True


async def set_mapping_unless_syncing(deps: CommandDeps, cmd: SetMapping) -> list[Change]:
    """Set the mapping now, or queue it behind the account's running sync (it is run as a job after it)."""
    if await _queued_behind_sync(deps, cmd):
        return []
    return await set_mapping(deps, cmd)


async def auto_map_unless_syncing(deps: CommandDeps, cmd: AutoMap) -> list[Change]:
    """Auto-map now, or queue it behind the account's running sync (it is run as a job after it)."""
    if await _queued_behind_sync(deps, cmd):
        return []
    return await auto_map(deps, cmd)


async def _check_tab(store: MappingStore, account_id: str, entity: ProcoreEntity) -> StoredSetup | None:
    setup = await store.read_setup(account_id)
    if setup is not None and setup.two_way:
        raise Rejected(TWO_WAY_REFUSAL)
    if setup is not None and setup.enabled_modules and entity not in domain.tabs_for(setup.enabled_modules):
        modules = ", ".join(labels.MODULES[m.value] for m in setup.enabled_modules)
        raise Rejected(f"the {TAB_LABEL[entity]} tab is not used by the enabled modules ({modules})")
    return setup


# --- manual mapping ------------------------------------------------------------------------


async def set_mapping(deps: CommandDeps, cmd: SetMapping, finish_job: FinishJob | None = None) -> list[Change]:
    """Manual mapping of one row, or clearing it. Two-way accounts map automatically, never by hand."""
    entity, account = cmd.entity, cmd.account_id
    label = PROCORE_LABEL[entity]
    async with deps.stores.transaction() as store:
        await store.lock_account(account)
        await _check_tab(store, account, entity)
        project = cmd.procore_project_id
        if entity in domain.PROJECT_SCOPED:
            if project is None:
                raise Rejected(
                    f"{TAB_LABEL[entity].lower()} are mapped per Procore project: procore_project_id is required"
                )
            if project not in await store.mapped_project_ids(account):
                raise Rejected(f"Procore project {project} is not mapped from any job site: map a job site to it first")
        elif project is not None:
            raise Rejected(f"{TAB_LABEL[entity].lower()} are not mapped per project: leave procore_project_id out")
        name: str | None = None
        if cmd.procore_id is not None:
            known = await store.procore_entity(account, entity, project, cmd.procore_id)
            if known is not None and known.gone:
                raise Rejected(f"Procore {label} {known.name} no longer exists in Procore")
            if known is None and await store.was_synced(account, entity, project or 0):
                raise Rejected(
                    f"Procore {label} {cmd.procore_id} is not in the synced list: sync {TAB_LABEL[entity]} and pick one"
                )
            name = known.name if known is not None else None
            holders = await store.holders_of(account, entity, project, cmd.procore_id)
            other = domain.one_to_one_conflict(entity, cmd.mobiclocks_id, holders)
            if other is not None:
                kind = MOBICLOCKS_LABEL[MOBICLOCKS_KIND_OF[entity]]
                raise Rejected(
                    f"Procore {label} {name or cmd.procore_id} is already mapped from {kind} {other}: "
                    f"a Procore {label} is mapped from one MobiClocks {kind} only"
                )
        changed = await store.set_mapping(
            account, entity, cmd.mobiclocks_id, project, cmd.procore_id, "manual", cmd.requested_by
        )
        changes: list[Change] = (
            [mapping_changed(account, entity, cmd.mobiclocks_id, project, cmd.procore_id, name)] if changed else []
        )
        kind = MOBICLOCKS_KIND_OF[entity]
        row = await store.reference_name(account, kind, cmd.mobiclocks_id) or cmd.mobiclocks_id
        row = f"{MOBICLOCKS_LABEL[kind][:1].upper()}{MOBICLOCKS_LABEL[kind][1:]} {row}"
        verb = "mapping cleared" if cmd.procore_id is None else f"mapped to Procore {label} {name or cmd.procore_id}"
        return await record_done(store, cmd, changes, f"{row} {verb}", None, finish_job)


# --- sync ----------------------------------------------------------------------------------


async def queue_sync(deps: CommandDeps, cmd: SyncProcoreEntities) -> list[Change]:
    """Queue the sync as a background job (it may have to wait an hour for Procore's rate limit); the job
    records the command's outcome when it ends."""
    async with deps.stores.reading() as store:
        setup = await store.read_setup(cmd.account_id)
    if setup is None or setup.procore_company_id is None:
        raise Rejected("choose the Procore company in Setup first")
    async with deps.stores.reading() as store:
        command = cmd.model_dump(mode="json")
        if await store.enqueue_job(cmd.event_id, cmd.account_id, cmd.entity.value, command, cmd.requested_by):
            log.info("queued sync job %s (%s of %s)", cmd.event_id, cmd.entity.value, cmd.account_id)
    return []


async def run_sync_job(deps: CommandDeps, job: ClaimedJob, progress: Progress, owner: str) -> None:
    """Run a queued job to its end: a sync, or a mapping command queued behind one of its account (the runner
    calls this; it raises what is transient, to be tried again). `owner`: the runner that claimed the job."""
    kinds: dict[str, type[SyncProcoreEntities | AutoMap | SetMapping]] = {
        t.model_fields["type"].default: t for t in (SyncProcoreEntities, AutoMap, SetMapping)
    }
    cmd = kinds[job.command["type"]].model_validate(job.command)

    async def finish_job(store: MappingStore, status: str, message: str) -> None:
        await store.finish_job(
            job.job_id, owner, "done" if status == "done" else "failed", None if status == "done" else message
        )

    async def work() -> list[Change]:
        refusal = domain.refusal_for_permission(REQUIRED_PERMISSION[type(cmd)], cmd.permissions)
        if refusal is not None:
            raise Rejected(refusal)
        if isinstance(cmd, AutoMap):
            return await auto_map(deps, cmd, finish_job)
        if isinstance(cmd, SetMapping):
            return await set_mapping(deps, cmd, finish_job)
        return await sync_entities(deps, cmd, progress, finish_job)

    async def finished_before() -> bool:
        """An earlier run of the job recorded the outcome (and then lost the job): end it, redo nothing."""
        async with deps.stores.transaction() as store:
            if not await store.is_finished(cmd.event_id):
                return False
            with contextlib.suppress(sync_jobs.JobLost):
                await store.finish_job(job.job_id, owner, "done", None)
            return True

    if not await finished_before():
        await settle(deps, cmd, work, finish_job)
        await finished_before()


async def sync_entities(
    deps: CommandDeps, cmd: SyncProcoreEntities, progress: Progress, finish_job: FinishJob
) -> list[Change]:
    """Pull Procore's whole list for one tab (cost codes: per mapped project) and reconcile the mappings.

    An entity that vanished from Procore is flagged gone and the mappings to it broken (emitted as
    cleared, with the reason), so entries that need it become Non publishable; one that came back
    is mapped again. `progress` counts the lists fetched (one per mapped project for cost codes).
    """
    entity, account = cmd.entity, cmd.account_id
    async with deps.stores.reading() as store:
        setup = await store.read_setup(account)
        projects = await store.mapped_project_ids(account)
    if setup is None or setup.procore_company_id is None:
        raise Rejected("choose the Procore company in Setup first")
    company = setup.procore_company_id
    if entity in domain.PROJECT_SCOPED and not projects:
        message = f"no Procore project is mapped yet: map a job site, then sync {TAB_LABEL[entity]}"
        return await record_done_alone(deps, cmd, message, finish_job)
    procore = deps.procore_lists(account, company)
    progress.held_up_s = lambda: procore.held_up_s(company)
    scopes: list[tuple[int, list[SyncedEntity]]] = []
    if entity in domain.PROJECT_SCOPED:
        progress.total = len(projects)
        for project in projects:
            scopes.append((project, await procore.fetch(entity, company, project)))
            progress.done = len(scopes)
    else:
        progress.total = 1
        scopes.append((0, await procore.fetch(entity, company, projects[0] if projects else None)))
        progress.done = 1
    directories: dict[int, list[int]] = {}
    if entity is ProcoreEntity.EMPLOYEE:
        # Each mapped project's directory too: the Employees tab warns about people missing from one.
        progress.total = 1 + len(projects)
        for project in projects:
            directories[project] = await procore.directory(company, project)
            progress.done = 1 + len(directories)

    totals = {"total": 0, "added": 0, "renamed": 0, "gone": 0, "returned": 0, "broken": 0}
    async with deps.stores.transaction() as store:
        # Locked, the diff is taken against what the previous sync of this account committed.
        await store.lock_account(account)
        now = await store.read_setup(account)
        if now is None or now.procore_company_id != company:
            raise Rejected("the Procore company changed during the sync: sync again")
        changes: list[Change] = []
        for project, items in scopes:
            diff = await store.apply_sync(account, entity, project, items)
            listed = names(items)
            broken = await store.mark_broken(account, entity, project, diff.gone)
            changes += [
                mapping_changed(account, entity, m.mobiclocks_id, project, None, None, m.broken_reason) for m in broken
            ]
            back = await store.restore_broken(account, entity, project, diff.returned)
            renamed = await store.working_mappings_to(account, entity, project, diff.renamed)
            changes += [
                mapping_changed(account, entity, m.mobiclocks_id, project, m.procore_id, listed[m.procore_id])
                for m in [*back, *renamed]
            ]
            totals["total"] += diff.total
            totals["added"] += len(diff.added)
            totals["renamed"] += len(diff.renamed)
            totals["gone"] += len(diff.gone)
            totals["returned"] += len(diff.returned)
            totals["broken"] += len(broken)
        if setup.two_way and entity is ProcoreEntity.COST_CODE:
            changes += await adopt_two_way_links(store, account)
        if entity is ProcoreEntity.EMPLOYEE:
            await store.replace_directories(account, directories)
        message = (
            f"{totals['total']} {TAB_LABEL[entity].lower()} synced: {totals['added']} new, "
            f"{totals['renamed']} renamed, {totals['gone']} gone from Procore ({totals['broken']} mappings broken)"
        )
        details = {**totals, "projects": [p for p, _ in scopes if p]}
        return await record_done(store, cmd, changes, message, details, finish_job)


# --- auto-map ------------------------------------------------------------------------------


async def auto_map(deps: CommandDeps, cmd: AutoMap, finish_job: FinishJob | None = None) -> list[Change]:
    """Map rows whose Number equals exactly one Procore entity's number; report mapped/skipped/ambiguous."""
    entity, account = cmd.entity, cmd.account_id
    async with deps.stores.transaction() as store:
        await store.lock_account(account)
        await _check_tab(store, account, entity)
        field = domain.NUMBER_FIELD[entity]
        if field is None:
            raise Rejected(
                f"auto-map needs a Number field, and Procore {TAB_LABEL[entity].lower()} have none: map them by hand"
            )
        scopes = await store.mapped_project_ids(account) if entity in domain.PROJECT_SCOPED else [0]
        if not scopes:
            raise Rejected(
                f"no Procore project is mapped yet: map a job site, then sync and auto-map {TAB_LABEL[entity]}"
            )
        if not any([await store.was_synced(account, entity, p) for p in scopes]):
            raise Rejected(f"sync {TAB_LABEL[entity]} first: auto-map compares with the synced Procore list")
        rows = await store.reference_rows(account, MOBICLOCKS_KIND_OF[entity])
        changes: list[Change] = []
        details: list[dict[str, Any]] = []
        counts = {Outcome.MAPPED: 0, Outcome.SKIPPED: 0, Outcome.AMBIGUOUS: 0}
        for project in scopes:
            procore = await store.procore_rows(account, entity, project)
            current = current_mappings(await store.mappings_of_entity(account, entity, project))
            plan = domain.auto_map(entity, rows, procore, current, cmd.overwrite_manual)
            names = {p.procore_id: p.name for p in procore}
            for mc_id, procore_id in plan.assignments:
                if await store.set_mapping(
                    account, entity, mc_id, project or None, procore_id, "auto", cmd.requested_by
                ):
                    changes.append(mapping_changed(account, entity, mc_id, project, procore_id, names.get(procore_id)))
            for outcome in counts:
                counts[outcome] += plan.count(outcome)
            details += [
                {
                    "mobiclocks_id": d.mobiclocks_id,
                    "outcome": d.outcome.value,
                    "reason": d.reason,
                    "procore_id": d.procore_id,
                    "procore_project_id": project or None,
                }
                for d in plan.decisions
            ]
        mapped, skipped, ambiguous = counts[Outcome.MAPPED], counts[Outcome.SKIPPED], counts[Outcome.AMBIGUOUS]
        await store.save_automap_report(
            account, entity, cmd.requested_by, cmd.overwrite_manual, (mapped, skipped, ambiguous), details
        )
        report = {"mapped": mapped, "skipped": skipped, "ambiguous": ambiguous, "field": field}
        message = (
            f"auto-map of {TAB_LABEL[entity]} on {field}: {mapped} mapped, {skipped} skipped, {ambiguous} ambiguous"
        )
        return await record_done(store, cmd, changes, message, report, finish_job)
