"""The mapping service's mapping use cases against in-memory fakes (`tests/unit/mapping_fakes.py`: no broker, no
database): manual mapping, syncs (queued, then run as background jobs), auto-map, and the commands queued behind a
running sync. The same use cases run against PostgreSQL and the Procore sandbox in the integration tests
(`test_mapping_sync`, `test_mapping_sync_jobs`, `test_mapping_gateway`)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.mapping import handlers, mapping_handlers
from services.mapping.adapters.procore_entities import SyncedEntity
from services.mapping.adapters.sync_jobs import ClaimedJob
from services.mapping.domain import Source
from services.mapping.sync_jobs import Progress
from shared.events import (
    AutoMap,
    MappingChanged,
    Module,
    ProcoreEntity,
    ReferenceKind,
    SetMapping,
    SyncProcoreEntities,
)
from shared.procore import ProcoreError
from shared.transient import Transient
from tests.unit.mapping_fakes import FakeDeps, Job, KnownProcoreEntity, Reference

ACCOUNT = "acct-1"
USER = "user-1"
COMPANY = 7001
RUNNER = "mapping-0"
MAPPING = ["procore.mapping"]


async def _deps(*modules: Module, two_way: bool = False, company: int | None = COMPANY) -> FakeDeps:
    deps = FakeDeps()
    await deps.store.save_setup(ACCOUNT, company, list(modules or [Module.TIMECARD]), two_way, USER)
    return deps


def _known(deps: FakeDeps, entity: ProcoreEntity, procore_id: int, name: str, project: int = 0, **kw: Any) -> None:
    deps.store.t.entities[(ACCOUNT, entity, project, procore_id)] = KnownProcoreEntity(name, kw.get("number"))
    if kw.get("gone"):
        deps.store.t.entities[(ACCOUNT, entity, project, procore_id)].gone = True
    deps.store.t.synced.add((ACCOUNT, entity, project))


def _reference(deps: FakeDeps, kind: ReferenceKind, entity_id: str, name: str, number: str | None = None) -> None:
    deps.store.t.references[(ACCOUNT, kind, entity_id)] = Reference(name, number, None)


def _set(entity: ProcoreEntity, mobiclocks_id: str, procore_id: int | None, project: int | None = None) -> SetMapping:
    return SetMapping(
        account_id=ACCOUNT,
        requested_by=USER,
        permissions=MAPPING,
        entity=entity,
        mobiclocks_id=mobiclocks_id,
        procore_id=procore_id,
        procore_project_id=project,
    )


def _sync(entity: ProcoreEntity) -> SyncProcoreEntities:
    return SyncProcoreEntities(account_id=ACCOUNT, requested_by=USER, permissions=MAPPING, entity=entity)


def _auto(entity: ProcoreEntity, overwrite: bool = False) -> AutoMap:
    return AutoMap(
        account_id=ACCOUNT, requested_by=USER, permissions=MAPPING, entity=entity, overwrite_manual=overwrite
    )


async def _rejection(deps: FakeDeps, cmd: SetMapping | AutoMap) -> str | None:
    if isinstance(cmd, SetMapping):
        await handlers.handle_command(deps, cmd, mapping_handlers.set_mapping_unless_syncing)
    else:
        await handlers.handle_command(deps, cmd, mapping_handlers.auto_map_unless_syncing)
    outcome = deps.store.t.outcomes[cmd.event_id]
    assert outcome.status == "rejected"
    assert deps.store.t.outbox == []
    return outcome.message


# --- manual mapping -------------------------------------------------------------------------


async def test_mapping_a_row_by_hand_stores_it_and_emits_it_with_the_procore_name() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.PROJECT, 11, "Tower")
    _reference(deps, ReferenceKind.JOB_SITE, "js-1", "North yard")
    cmd = _set(ProcoreEntity.PROJECT, "js-1", 11)

    [change] = await handlers.handle_command(deps, cmd, mapping_handlers.set_mapping_unless_syncing)

    assert isinstance(change, MappingChanged)
    assert (change.mobiclocks_id, change.procore_id, change.procore_name) == ("js-1", 11, "Tower")
    stored = deps.store.t.mappings[(ACCOUNT, ProcoreEntity.PROJECT, "js-1", 0)]
    assert (stored.procore_id, stored.source) == (11, Source.MANUAL)
    assert deps.store.t.outcomes[cmd.event_id].message == "Job site North yard mapped to Procore project Tower"
    assert deps.store.t.outbox == [change]


async def test_clearing_a_mapping_emits_it_cleared_and_mapping_it_again_the_same_emits_nothing() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.PROJECT, 11, "Tower")
    await mapping_handlers.set_mapping(deps, _set(ProcoreEntity.PROJECT, "js-1", 11))

    same = await mapping_handlers.set_mapping(deps, _set(ProcoreEntity.PROJECT, "js-1", 11))
    clear = _set(ProcoreEntity.PROJECT, "js-1", None)
    [cleared] = await mapping_handlers.set_mapping(deps, clear)

    assert same == []
    assert isinstance(cleared, MappingChanged)
    assert (cleared.procore_id, cleared.procore_name) == (None, None)
    assert deps.store.t.outcomes[clear.event_id].message == "Job site js-1 mapping cleared"
    assert deps.store.t.mappings == {}


async def test_a_two_way_account_is_never_mapped_by_hand() -> None:
    deps = await _deps(two_way=True)

    assert await _rejection(deps, _set(ProcoreEntity.PROJECT, "js-1", 11)) == handlers.TWO_WAY_REFUSAL


async def test_a_tab_the_enabled_modules_do_not_use_is_refused() -> None:
    deps = await _deps(Module.MANPOWER)

    message = await _rejection(deps, _set(ProcoreEntity.EMPLOYEE, "emp-1", 31))

    assert message == "the Employees tab is not used by the enabled modules (Manpower)"


async def test_cost_codes_are_mapped_per_mapped_project() -> None:
    deps = await _deps()

    without = await _rejection(deps, _set(ProcoreEntity.COST_CODE, "cc-1", 501))
    unmapped = await _rejection(deps, _set(ProcoreEntity.COST_CODE, "cc-1", 501, project=11))
    vendor = await _rejection(deps, _set(ProcoreEntity.PAYROLL_TYPE, "pay-1", 41, project=11))

    assert without == "cost codes are mapped per Procore project: procore_project_id is required"
    assert unmapped == "Procore project 11 is not mapped from any job site: map a job site to it first"
    assert vendor == "payroll types are not mapped per project: leave procore_project_id out"


async def test_only_a_live_entity_of_the_synced_list_can_be_picked() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.EMPLOYEE, 31, "Ann Lee", gone=True)

    gone = await _rejection(deps, _set(ProcoreEntity.EMPLOYEE, "emp-1", 31))
    unknown = await _rejection(deps, _set(ProcoreEntity.EMPLOYEE, "emp-1", 32))

    assert gone == "Procore employee Ann Lee no longer exists in Procore"
    assert unknown == "Procore employee 32 is not in the synced list: sync Employees and pick one"


async def test_an_employee_is_mapped_from_one_mobiclocks_employee_only() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.EMPLOYEE, 31, "Ann Lee")
    await mapping_handlers.set_mapping(deps, _set(ProcoreEntity.EMPLOYEE, "emp-1", 31))
    deps.store.t.outbox.clear()

    message = await _rejection(deps, _set(ProcoreEntity.EMPLOYEE, "emp-2", 31))

    assert message == (
        "Procore employee Ann Lee is already mapped from employee emp-1: a Procore employee is mapped from one "
        "MobiClocks employee only"
    )


async def test_a_mapping_command_waits_behind_the_running_sync_of_its_account() -> None:
    deps = await _deps()
    deps.store.t.jobs[uuid.uuid4()] = Job(ACCOUNT, {}, "running", RUNNER)
    cmd = _set(ProcoreEntity.PROJECT, "js-1", 11)

    assert await handlers.handle_command(deps, cmd, mapping_handlers.set_mapping_unless_syncing) == []

    assert deps.store.t.jobs[cmd.event_id].command == cmd.model_dump(mode="json")
    assert deps.store.t.mappings == {}
    assert deps.store.t.outcomes == {}  # its job records the outcome


# --- syncs ----------------------------------------------------------------------------------


async def test_a_sync_is_queued_as_a_job_once_a_company_is_chosen() -> None:
    deps = await _deps(company=None)
    refused = _sync(ProcoreEntity.PROJECT)
    await handlers.handle_command(deps, refused, mapping_handlers.queue_sync)

    await deps.store.save_setup(ACCOUNT, COMPANY, [Module.TIMECARD], False, USER)
    cmd = _sync(ProcoreEntity.PROJECT)
    await handlers.handle_command(deps, cmd, mapping_handlers.queue_sync)

    assert deps.store.t.outcomes[refused.event_id].message == "choose the Procore company in Setup first"
    assert list(deps.store.t.jobs) == [cmd.event_id]
    assert cmd.event_id not in deps.store.t.outcomes


async def _run(deps: FakeDeps, cmd: SyncProcoreEntities | SetMapping | AutoMap) -> Progress:
    """Claim and run the command's job as the runner does."""
    command = cmd.model_dump(mode="json")
    deps.store.t.jobs[cmd.event_id] = Job(ACCOUNT, command, "running", RUNNER)
    progress = Progress()
    await mapping_handlers.run_sync_job(deps, ClaimedJob(cmd.event_id, ACCOUNT, command), progress, RUNNER)
    return progress


async def test_a_sync_reconciles_the_list_and_breaks_the_mappings_to_what_vanished() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.PROJECT, 11, "Tower")
    _known(deps, ProcoreEntity.PROJECT, 12, "Bridge")
    await mapping_handlers.set_mapping(deps, _set(ProcoreEntity.PROJECT, "js-1", 12))
    deps.store.t.outbox.clear()
    listed = [SyncedEntity(11, "Tower B", "T-1"), SyncedEntity(13, "Depot", None)]
    deps.procore.lists[(ProcoreEntity.PROJECT, 12)] = listed
    cmd = _sync(ProcoreEntity.PROJECT)

    progress = await _run(deps, cmd)

    assert (progress.done, progress.total) == (1, 1)
    assert deps.lists_asked == [(ACCOUNT, COMPANY, None)]
    [broken] = deps.store.t.outbox
    assert isinstance(broken, MappingChanged)
    assert (broken.mobiclocks_id, broken.procore_id) == ("js-1", None)
    assert broken.broken_reason == "Procore project Bridge no longer exists in Procore"
    outcome = deps.store.t.outcomes[cmd.event_id]
    assert outcome.message == "2 projects synced: 1 new, 1 renamed, 1 gone from Procore (1 mappings broken)"
    assert outcome.details == {
        "total": 2,
        "added": 1,
        "renamed": 1,
        "gone": 1,
        "returned": 0,
        "broken": 1,
        "projects": [],
    }
    assert deps.store.t.jobs[cmd.event_id].state == "done"


async def test_an_entity_back_in_procore_is_mapped_again() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.PROJECT, 11, "Tower")
    await mapping_handlers.set_mapping(deps, _set(ProcoreEntity.PROJECT, "js-1", 11))
    await _run(deps, _sync(ProcoreEntity.PROJECT))  # gone from Procore: broken
    deps.store.t.outbox.clear()
    deps.procore.lists[(ProcoreEntity.PROJECT, None)] = [SyncedEntity(11, "Tower", None)]

    await _run(deps, _sync(ProcoreEntity.PROJECT))

    [back] = deps.store.t.outbox
    assert isinstance(back, MappingChanged)
    assert (back.procore_id, back.procore_name, back.broken_reason) == (11, "Tower", None)


async def test_cost_codes_are_synced_per_mapped_project_and_need_one() -> None:
    deps = await _deps()
    none_yet = _sync(ProcoreEntity.COST_CODE)
    await _run(deps, none_yet)
    _known(deps, ProcoreEntity.PROJECT, 11, "Tower")
    await mapping_handlers.set_mapping(deps, _set(ProcoreEntity.PROJECT, "js-1", 11))
    deps.procore.lists[(ProcoreEntity.COST_CODE, 11)] = [SyncedEntity(501, "Concrete", "03-100")]
    cmd = _sync(ProcoreEntity.COST_CODE)

    await _run(deps, cmd)

    assert deps.store.t.outcomes[none_yet.event_id].message == (
        "no Procore project is mapped yet: map a job site, then sync Cost codes"
    )
    assert deps.store.t.jobs[none_yet.event_id].state == "done"
    assert ("fetch", ProcoreEntity.COST_CODE, COMPANY, 11) in deps.procore.calls
    assert await deps.store.was_synced(ACCOUNT, ProcoreEntity.COST_CODE, 11)
    assert deps.store.t.outcomes[cmd.event_id].details == {
        "total": 1,
        "added": 1,
        "renamed": 0,
        "gone": 0,
        "returned": 0,
        "broken": 0,
        "projects": [11],
    }


async def test_an_employee_sync_keeps_each_mapped_projects_directory() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.PROJECT, 11, "Tower")
    await mapping_handlers.set_mapping(deps, _set(ProcoreEntity.PROJECT, "js-1", 11))
    deps.procore.lists[(ProcoreEntity.EMPLOYEE, 11)] = [SyncedEntity(31, "Ann Lee", "E1")]
    deps.procore.people[11] = [31, 32, 31]

    progress = await _run(deps, _sync(ProcoreEntity.EMPLOYEE))

    assert deps.store.t.directories[ACCOUNT] == {11: [31, 32]}
    assert (progress.done, progress.total) == (2, 2)


async def test_a_company_changed_during_the_sync_fails_its_job() -> None:
    deps = await _deps()
    cmd = _sync(ProcoreEntity.PROJECT)

    async def switch_company() -> None:  # meanwhile, in Setup
        await deps.store.save_setup(ACCOUNT, 7002, [Module.TIMECARD], False, USER)

    deps.procore.after_fetch = switch_company

    await _run(deps, cmd)

    outcome = deps.store.t.outcomes[cmd.event_id]
    assert (outcome.status, outcome.message) == ("rejected", "the Procore company changed during the sync: sync again")
    job = deps.store.t.jobs[cmd.event_id]
    assert (job.state, job.error) == ("failed", outcome.message)
    assert not await deps.store.was_synced(ACCOUNT, ProcoreEntity.PROJECT, 0)


async def test_procore_unavailable_leaves_the_job_to_be_tried_again() -> None:
    deps = await _deps()
    deps.procore.error = ProcoreError(429, "slow down")
    cmd = _sync(ProcoreEntity.PROJECT)

    with pytest.raises(Transient):
        await _run(deps, cmd)

    assert deps.store.t.outcomes == {}
    assert deps.store.t.jobs[cmd.event_id].state == "running"


async def test_procore_refusing_the_list_fails_the_job_with_its_message() -> None:
    deps = await _deps()
    deps.procore.error = ProcoreError(403, "no access to projects")
    cmd = _sync(ProcoreEntity.PROJECT)

    await _run(deps, cmd)

    assert deps.store.t.outcomes[cmd.event_id].status == "failed"
    assert (deps.store.t.jobs[cmd.event_id].state, deps.store.t.jobs[cmd.event_id].error) == (
        "failed",
        "no access to projects",
    )


async def test_a_job_whose_outcome_was_recorded_is_ended_and_not_redone() -> None:
    deps = await _deps()
    cmd = _sync(ProcoreEntity.PROJECT)
    await deps.store.record_outcome(cmd.event_id, ACCOUNT, cmd.type, "done", "earlier run", None, USER)

    await _run(deps, cmd)

    assert deps.procore.calls == []
    assert deps.store.t.jobs[cmd.event_id].state == "done"
    assert deps.store.t.outcomes[cmd.event_id].message == "earlier run"


async def test_a_job_without_the_permission_is_refused_and_ended() -> None:
    deps = await _deps()
    cmd = SyncProcoreEntities(account_id=ACCOUNT, requested_by=USER, permissions=[], entity=ProcoreEntity.PROJECT)

    await _run(deps, cmd)

    assert deps.store.t.outcomes[cmd.event_id].status == "rejected"
    assert deps.store.t.jobs[cmd.event_id].state == "failed"
    assert deps.procore.calls == []


async def test_a_mapping_queued_behind_a_sync_runs_as_its_job() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.PROJECT, 11, "Tower")
    cmd = _set(ProcoreEntity.PROJECT, "js-1", 11)

    await _run(deps, cmd)

    assert deps.store.t.mappings[(ACCOUNT, ProcoreEntity.PROJECT, "js-1", 0)].procore_id == 11
    assert deps.store.t.jobs[cmd.event_id].state == "done"


# --- auto-map -------------------------------------------------------------------------------


async def test_auto_map_maps_rows_whose_number_matches_one_procore_entity() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.EMPLOYEE, 31, "Ann Lee", number="E1")
    _known(deps, ProcoreEntity.EMPLOYEE, 32, "Bo Chen", number="E2")
    _known(deps, ProcoreEntity.EMPLOYEE, 33, "Bo Chan", number="E2")
    _reference(deps, ReferenceKind.EMPLOYEE, "emp-1", "Ann", "E1")
    _reference(deps, ReferenceKind.EMPLOYEE, "emp-2", "Bo", "E2")
    _reference(deps, ReferenceKind.EMPLOYEE, "emp-3", "Cy", None)
    cmd = _auto(ProcoreEntity.EMPLOYEE)

    changes = await handlers.handle_command(deps, cmd, mapping_handlers.auto_map_unless_syncing)

    assert [(c.mobiclocks_id, c.procore_id, c.procore_name) for c in changes if isinstance(c, MappingChanged)] == [
        ("emp-1", 31, "Ann Lee")
    ]
    assert deps.store.t.mappings[(ACCOUNT, ProcoreEntity.EMPLOYEE, "emp-1", 0)].source is Source.AUTO
    outcome = deps.store.t.outcomes[cmd.event_id]
    assert outcome.message == "auto-map of Employees on employee_id: 1 mapped, 1 skipped, 1 ambiguous"
    assert outcome.details == {"mapped": 1, "skipped": 1, "ambiguous": 1, "field": "employee_id"}
    counts, details = deps.store.t.automap_reports[(ACCOUNT, ProcoreEntity.EMPLOYEE)]
    assert counts == (1, 1, 1)
    assert [d["outcome"] for d in details] == ["mapped", "ambiguous", "skipped"]


async def test_auto_map_keeps_mappings_made_by_hand_unless_asked() -> None:
    deps = await _deps()
    _known(deps, ProcoreEntity.EMPLOYEE, 31, "Ann Lee", number="E1")
    _known(deps, ProcoreEntity.EMPLOYEE, 32, "Ann Lea", number="X")
    _reference(deps, ReferenceKind.EMPLOYEE, "emp-1", "Ann", "E1")
    await mapping_handlers.set_mapping(deps, _set(ProcoreEntity.EMPLOYEE, "emp-1", 32))

    kept = await mapping_handlers.auto_map(deps, _auto(ProcoreEntity.EMPLOYEE))
    replaced = await mapping_handlers.auto_map(deps, _auto(ProcoreEntity.EMPLOYEE, overwrite=True))

    assert kept == []
    assert [(c.mobiclocks_id, c.procore_id) for c in replaced if isinstance(c, MappingChanged)] == [("emp-1", 31)]


async def test_auto_map_needs_a_number_field_and_a_synced_list() -> None:
    deps = await _deps(Module.MANPOWER, Module.TIMECARD)

    vendors = await _rejection(deps, _auto(ProcoreEntity.VENDOR))
    unsynced = await _rejection(deps, _auto(ProcoreEntity.EMPLOYEE))
    no_project = await _rejection(deps, _auto(ProcoreEntity.COST_CODE))

    assert vendors == "auto-map needs a Number field, and Procore vendors have none: map them by hand"
    assert unsynced == "sync Employees first: auto-map compares with the synced Procore list"
    assert no_project == "no Procore project is mapped yet: map a job site, then sync and auto-map Cost codes"
