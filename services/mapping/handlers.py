"""Mapping use cases: commands from the dashboard (through the gateway) and MobiClocks reference events.

Every command is checked here, where the data lives: the requester's permission (fail closed: a command without
a permissions list is refused; back-end callers send as a named system principal), two-way
accounts, enabled tabs, one-to-one tabs. A refused command is recorded (`command_outcomes`,
which the gateway shows) with its reason; a command that Procore refused is recorded with
Procore's message. Unavailable is not invalid: a database, network or Procore outage (5xx, 429,
timeouts) is raised, so the consumer retries the command later, and is never recorded as its outcome.

Each change is written to the outbox in the transaction that makes it, with the command's outcome,
under the account's lock (one writer per account across instances). A redelivered command is not
redone: its outcome, and the changes it emitted, were committed together.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from services.mapping import domain, proof
from services.mapping.adapters import bindings, procore_lists
from services.mapping.adapters import connections as store
from services.mapping.adapters import repository as repo
from services.mapping.adapters.changes import Change
from services.mapping.connection import (
    ConnectionDeps,
    NeedsReauthorization,
    NotBound,
    NotConnected,
    bind_proven,
    client_for,
    disconnect,
)
from services.mapping.domain import MOBICLOCKS_LABEL, PROCORE_LABEL, TAB_LABEL, Outcome, Permission
from shared.events import (
    MOBICLOCKS_KIND_OF,
    AutoMap,
    CompleteProcoreConnection,
    ConfigureSetup,
    ConnectionStatus,
    DisconnectProcore,
    MappingChanged,
    ProcoreEntity,
    ReferenceDeleted,
    ReferenceUpserted,
    SetMapping,
    SetupChanged,
    SyncProcoreEntities,
    UnbindProcoreCompany,
)
from shared.procore import ProcoreError
from shared.transient import Transient

log = logging.getLogger(__name__)

Command = (
    ConfigureSetup
    | SetMapping
    | CompleteProcoreConnection
    | DisconnectProcore
    | UnbindProcoreCompany
    | SyncProcoreEntities
    | AutoMap
)

REQUIRED_PERMISSION: dict[type[Any], Permission] = {
    ConfigureSetup: Permission.SETUP,
    CompleteProcoreConnection: Permission.SETUP,
    DisconnectProcore: Permission.SETUP,
    UnbindProcoreCompany: Permission.SETUP,
    SetMapping: Permission.MAPPING,
    SyncProcoreEntities: Permission.MAPPING,
    AutoMap: Permission.MAPPING,
}

TWO_WAY_REFUSAL = (
    "this account uses the two-way integration: its mappings come from the Procore ids linked in MobiClocks, "
    "so they cannot be changed here"
)


class Rejected(Exception):
    """The command is well-formed but not allowed or not applicable; the reason is shown to the user."""


class AlreadyHandled(Exception):
    """Another delivery of the command recorded its outcome first: this one's transaction is rolled back."""


# --- dispatch ------------------------------------------------------------------------------


async def handle_command(deps: ConnectionDeps, cmd: Command) -> list[Change]:
    """Run one command at most once in effect; returns the changes it queued on the outbox.

    Raises what is transient (the consumer retries the command); records everything else.
    """
    async with deps.pool.acquire() as conn:
        if await repo.is_finished(conn, cmd.event_id):
            return []
    try:
        refusal = domain.refusal_for_permission(REQUIRED_PERMISSION[type(cmd)], cmd.permissions)
        if refusal is not None:
            raise Rejected(refusal)
        return await _run(deps, cmd)
    except AlreadyHandled:
        log.info("%s %s was handled meanwhile (a redelivery)", cmd.type, cmd.event_id)
    except Rejected as error:
        log.warning(
            "refused %s %s of %s by %s %s: %s",
            cmd.type,
            cmd.event_id,
            cmd.account_id,
            cmd.requester_kind.value,
            cmd.requested_by,
            error,
        )
        await _record(deps.pool, cmd, "rejected", str(error))
    except ProcoreError as error:
        if error.transient:
            raise Transient(f"Procore is unavailable ({error.status}): {error.message}") from error
        await _record(deps.pool, cmd, "failed", error.message)
    except (NotConnected, NeedsReauthorization) as error:
        await _record(deps.pool, cmd, "failed", str(error))
    except NotBound as error:
        log.warning("refused a Procore call for %s %s of %s: %s", cmd.type, cmd.event_id, cmd.account_id, error)
        await _record(deps.pool, cmd, "rejected", str(error))
    return []


async def _run(deps: ConnectionDeps, cmd: Command) -> list[Change]:
    if isinstance(cmd, ConfigureSetup):
        return await configure_setup(deps, cmd)
    if isinstance(cmd, SetMapping):
        return await set_mapping(deps, cmd)
    if isinstance(cmd, SyncProcoreEntities):
        return await sync_entities(deps, cmd)
    if isinstance(cmd, AutoMap):
        return await auto_map(deps, cmd)
    if isinstance(cmd, CompleteProcoreConnection):
        return await finish_connection(deps, cmd)
    if isinstance(cmd, UnbindProcoreCompany):
        return await unbind_company(deps, cmd)
    return await disconnect_procore(deps, cmd)


async def _finish(
    deps: ConnectionDeps,
    conn: asyncpg.Connection,
    cmd: Command,
    changes: list[Change],
    message: str,
    details: dict[str, Any] | None = None,
) -> list[Change]:
    """Record a command as done and queue the changes it made, in the transaction that made them."""
    recorded = await repo.record_outcome(
        conn,
        cmd.event_id,
        cmd.account_id,
        cmd.type,
        "done",
        message,
        details,
        cmd.requested_by,
        [c.model_dump(mode="json") for c in changes],
    )
    if not recorded:
        raise AlreadyHandled(cmd.event_id)
    await deps.emit(conn, changes)
    return changes


async def _done(deps: ConnectionDeps, cmd: Command, message: str) -> list[Change]:
    async with deps.pool.acquire() as conn, conn.transaction():
        return await _finish(deps, conn, cmd, [], message)


async def _record(pool: asyncpg.Pool, cmd: Command, status: str, message: str) -> None:
    async with pool.acquire() as conn:
        await repo.record_outcome(conn, cmd.event_id, cmd.account_id, cmd.type, status, message, None, cmd.requested_by)


# --- connection ----------------------------------------------------------------------------


async def finish_connection(deps: ConnectionDeps, cmd: CompleteProcoreConnection) -> list[Change]:
    """Prove which companies the new connection can act for (its own company list) and bind them.

    The tokens were stored with this command's id when they were obtained (over the internal API); a newer
    connection replaces them, and then this command has nothing left to prove.
    """
    account = cmd.account_id
    async with deps.pool.acquire() as conn:
        stored = await store.read(conn, deps.cipher, account)
    if stored is None or stored.connect_command != cmd.event_id or stored.status is not ConnectionStatus.CONNECTED:
        raise Rejected("this Procore connection was replaced or disconnected before it was finished")
    reached = await procore_lists.companies(client_for(deps, account, None))
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock_account(conn, account)
        now = await store.read(conn, deps.cipher, account)
        if now is None or now.connect_command != cmd.event_id or now.status is not ConnectionStatus.CONNECTED:
            raise Rejected("this Procore connection was replaced or disconnected before it was finished")
        changes, message = await bind_proven(conn, cmd, stored.grant_type, reached)
        return await _finish(deps, conn, cmd, changes, message)


async def disconnect_procore(deps: ConnectionDeps, cmd: DisconnectProcore) -> list[Change]:
    """Revoke and forget the tokens. The bound companies stay the account's (setup and mappings survive a
    reconnect); releasing one is `unbind_company`."""
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock_account(conn, cmd.account_id)
        changes = await disconnect(deps, conn, cmd.account_id)
        message = "disconnected from Procore (the tokens are revoked; the companies stay connected to this account)"
        return await _finish(deps, conn, cmd, changes, message)


async def unbind_company(deps: ConnectionDeps, cmd: UnbindProcoreCompany) -> list[Change]:
    """Release one of the account's companies; if Setup had chosen it, the choice and its mappings go too."""
    account, company = cmd.account_id, cmd.procore_company_id
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock_account(conn, account)
        changes: list[Change] = []
        setup = await repo.read_setup(conn, account)
        if setup is not None and setup.procore_company_id == company:
            await repo.save_setup(conn, account, None, setup.enabled_modules, setup.two_way, cmd.requested_by)
            changes += await _forget_company(conn, account)
            changes.insert(0, await _setup_change(conn, account))
        released = await bindings.unbind(conn, account, company)
        if released is None:
            raise Rejected(f"Procore company {company} is not connected to this account")
        message = f"Procore company {released.name} is no longer connected to this account"
        return await _finish(deps, conn, cmd, changes, message)


# --- setup ---------------------------------------------------------------------------------


async def configure_setup(deps: ConnectionDeps, cmd: ConfigureSetup) -> list[Change]:
    """Store the account's setup; everyone else follows the SetupChanged event.

    Choosing another Procore company clears every mapping (they point at the old company's entities);
    turning two-way on replaces the mappings with the Procore ids linked in MobiClocks.
    """
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock_account(conn, cmd.account_id)
        old = await repo.read_setup(conn, cmd.account_id)
        if cmd.procore_company_id is not None:
            holder = await bindings.holder_of(conn, cmd.procore_company_id)
            if holder != cmd.account_id:
                raise Rejected(proof.not_bound_message(cmd.procore_company_id, holder))
        await repo.save_setup(
            conn, cmd.account_id, cmd.procore_company_id, cmd.enabled_modules, cmd.two_way, cmd.requested_by
        )
        changes: list[Change] = [await _setup_change(conn, cmd.account_id)]
        if old is not None and old.procore_company_id is not None and old.procore_company_id != cmd.procore_company_id:
            changes += await _forget_company(conn, cmd.account_id)
        if cmd.two_way and not (old is not None and old.two_way):
            changes += await adopt_two_way_links(conn, cmd.account_id)
        return await _finish(deps, conn, cmd, changes, "setup saved")


async def _setup_change(conn: asyncpg.Connection, account_id: str) -> SetupChanged:
    setup = await repo.read_setup(conn, account_id)
    return SetupChanged(
        account_id=account_id,
        procore_company_id=setup.procore_company_id if setup else None,
        enabled_modules=setup.enabled_modules if setup else [],
        two_way=setup.two_way if setup else False,
        connection=await store.status_of(conn, account_id),
    )


async def _forget_company(conn: asyncpg.Connection, account_id: str) -> list[Change]:
    """The account no longer uses its Procore company: every mapping points at that company's entities."""
    changes: list[Change] = []
    for m in await repo.delete_account_mappings(conn, account_id):
        changes.append(_changed(account_id, m.entity, m.mobiclocks_id, m.procore_project_id, None))
    await repo.forget_procore_entities(conn, account_id)
    return changes


def _changed(
    account_id: str,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    project_id: int | None,
    procore_id: int | None,
    name: str | None = None,
    broken_reason: str | None = None,
) -> MappingChanged:
    return MappingChanged(
        account_id=account_id,
        entity=entity,
        mobiclocks_id=mobiclocks_id,
        procore_id=procore_id,
        procore_project_id=project_id or None,
        procore_name=name if procore_id is not None else None,
        broken_reason=broken_reason,
    )


async def _check_tab(conn: asyncpg.Connection, account_id: str, entity: ProcoreEntity) -> repo.StoredSetup | None:
    setup = await repo.read_setup(conn, account_id)
    if setup is not None and setup.two_way:
        raise Rejected(TWO_WAY_REFUSAL)
    if setup is not None and setup.enabled_modules and entity not in domain.tabs_for(setup.enabled_modules):
        modules = ", ".join(m.value for m in setup.enabled_modules)
        raise Rejected(f"the {TAB_LABEL[entity]} tab is not used by the enabled modules ({modules})")
    return setup


# --- manual mapping ------------------------------------------------------------------------


async def set_mapping(deps: ConnectionDeps, cmd: SetMapping) -> list[Change]:
    """Manual mapping of one row, or clearing it. Two-way accounts map automatically, never by hand."""
    entity, account = cmd.entity, cmd.account_id
    label = PROCORE_LABEL[entity]
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock_account(conn, account)
        await _check_tab(conn, account, entity)
        project = cmd.procore_project_id
        if entity in domain.PROJECT_SCOPED:
            if project is None:
                raise Rejected(
                    f"{TAB_LABEL[entity].lower()} are mapped per Procore project: procore_project_id is required"
                )
            if project not in await repo.mapped_project_ids(conn, account):
                raise Rejected(f"Procore project {project} is not mapped from any job site: map a job site to it first")
        elif project is not None:
            raise Rejected(f"{TAB_LABEL[entity].lower()} are not mapped per project: leave procore_project_id out")
        name: str | None = None
        if cmd.procore_id is not None:
            known = await repo.procore_entity(conn, account, entity, project, cmd.procore_id)
            if known is not None and known.gone:
                raise Rejected(f"Procore {label} {known.name} no longer exists in Procore")
            if known is None and await repo.was_synced(conn, account, entity, project or 0):
                raise Rejected(
                    f"Procore {label} {cmd.procore_id} is not in the synced list: sync {TAB_LABEL[entity]} and pick one"
                )
            name = known.name if known is not None else None
            holders = await repo.holders_of(conn, account, entity, project, cmd.procore_id)
            other = domain.one_to_one_conflict(entity, cmd.mobiclocks_id, holders)
            if other is not None:
                kind = MOBICLOCKS_LABEL[MOBICLOCKS_KIND_OF[entity]]
                raise Rejected(
                    f"Procore {label} {name or cmd.procore_id} is already mapped from {kind} {other}: "
                    f"a Procore {label} is mapped from one MobiClocks {kind} only"
                )
        changed = await repo.set_mapping(
            conn, account, entity, cmd.mobiclocks_id, project, cmd.procore_id, "manual", cmd.requested_by
        )
        changes: list[Change] = (
            [_changed(account, entity, cmd.mobiclocks_id, project, cmd.procore_id, name)] if changed else []
        )
        verb = "cleared" if cmd.procore_id is None else f"mapped to {name or cmd.procore_id}"
        return await _finish(deps, conn, cmd, changes, f"{cmd.mobiclocks_id} {verb}")


# --- sync ----------------------------------------------------------------------------------


async def sync_entities(deps: ConnectionDeps, cmd: SyncProcoreEntities) -> list[Change]:
    """Pull Procore's whole list for one tab (cost codes: per mapped project) and reconcile the mappings.

    An entity that vanished from Procore is flagged gone and the mappings to it broken (emitted as
    cleared, with the reason), so entries that need it become Non publishable; one that came back
    is mapped again.
    """
    entity, account = cmd.entity, cmd.account_id
    async with deps.pool.acquire() as conn:
        setup = await repo.read_setup(conn, account)
        projects = await repo.mapped_project_ids(conn, account)
    if setup is None or setup.procore_company_id is None:
        raise Rejected("choose the Procore company in Setup first")
    company = setup.procore_company_id
    if entity in domain.PROJECT_SCOPED and not projects:
        message = f"no Procore project is mapped yet: map a job site, then sync {TAB_LABEL[entity]}"
        return await _done(deps, cmd, message)
    client = client_for(deps, account, company)
    scopes: list[tuple[int, list[repo.SyncedEntity]]] = []
    if entity in domain.PROJECT_SCOPED:
        for project in projects:
            scopes.append((project, await procore_lists.fetch(client, entity, company, project)))
    else:
        scopes.append((0, await procore_lists.fetch(client, entity, company, projects[0] if projects else None)))

    totals = {"total": 0, "added": 0, "renamed": 0, "gone": 0, "returned": 0, "broken": 0}
    async with deps.pool.acquire() as conn, conn.transaction():
        # Locked, the diff is taken against what the previous sync of this account committed.
        await repo.lock_account(conn, account)
        now = await repo.read_setup(conn, account)
        if now is None or now.procore_company_id != company:
            raise Rejected("the Procore company changed during the sync: sync again")
        changes: list[Change] = []
        for project, items in scopes:
            diff = await repo.apply_sync(conn, account, entity, project, items)
            names = procore_lists.names(items)
            broken = await repo.mark_broken(conn, account, entity, project, diff.gone)
            changes += [
                _changed(account, entity, m.mobiclocks_id, project, None, None, m.broken_reason) for m in broken
            ]
            back = await repo.restore_broken(conn, account, entity, project, diff.returned)
            renamed = await repo.working_mappings_to(conn, account, entity, project, diff.renamed)
            changes += [
                _changed(account, entity, m.mobiclocks_id, project, m.procore_id, names[m.procore_id])
                for m in [*back, *renamed]
            ]
            totals["total"] += diff.total
            totals["added"] += len(diff.added)
            totals["renamed"] += len(diff.renamed)
            totals["gone"] += len(diff.gone)
            totals["returned"] += len(diff.returned)
            totals["broken"] += len(broken)
        if setup.two_way and entity is ProcoreEntity.COST_CODE:
            changes += await adopt_two_way_links(conn, account)
        message = (
            f"{totals['total']} {TAB_LABEL[entity].lower()} synced: {totals['added']} new, "
            f"{totals['renamed']} renamed, {totals['gone']} gone from Procore ({totals['broken']} mappings broken)"
        )
        return await _finish(deps, conn, cmd, changes, message, {**totals, "projects": [p for p, _ in scopes if p]})


# --- auto-map ------------------------------------------------------------------------------


async def auto_map(deps: ConnectionDeps, cmd: AutoMap) -> list[Change]:
    """Map rows whose Number equals exactly one Procore entity's number; report mapped/skipped/ambiguous."""
    entity, account = cmd.entity, cmd.account_id
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock_account(conn, account)
        await _check_tab(conn, account, entity)
        field = domain.NUMBER_FIELD[entity]
        if field is None:
            raise Rejected(
                f"auto-map needs a Number field, and Procore {TAB_LABEL[entity].lower()} have none: map them by hand"
            )
        scopes = await repo.mapped_project_ids(conn, account) if entity in domain.PROJECT_SCOPED else [0]
        if not scopes:
            raise Rejected(
                f"no Procore project is mapped yet: map a job site, then sync and auto-map {TAB_LABEL[entity]}"
            )
        if not any([await repo.was_synced(conn, account, entity, p) for p in scopes]):
            raise Rejected(f"sync {TAB_LABEL[entity]} first: auto-map compares with the synced Procore list")
        rows = await repo.reference_rows(conn, account, MOBICLOCKS_KIND_OF[entity])
        changes: list[Change] = []
        details: list[dict[str, Any]] = []
        counts = {Outcome.MAPPED: 0, Outcome.SKIPPED: 0, Outcome.AMBIGUOUS: 0}
        for project in scopes:
            procore = await repo.procore_rows(conn, account, entity, project)
            current = repo.current_mappings(await repo.mappings_of_entity(conn, account, entity, project))
            plan = domain.auto_map(entity, rows, procore, current, cmd.overwrite_manual)
            names = {p.procore_id: p.name for p in procore}
            for mc_id, procore_id in plan.assignments:
                if await repo.set_mapping(
                    conn, account, entity, mc_id, project or None, procore_id, "auto", cmd.requested_by
                ):
                    changes.append(_changed(account, entity, mc_id, project, procore_id, names.get(procore_id)))
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
        await repo.save_automap_report(
            conn, account, entity, cmd.requested_by, cmd.overwrite_manual, (mapped, skipped, ambiguous), details
        )
        report = {"mapped": mapped, "skipped": skipped, "ambiguous": ambiguous, "field": field}
        message = (
            f"auto-map of {TAB_LABEL[entity]} on {field}: {mapped} mapped, {skipped} skipped, {ambiguous} ambiguous"
        )
        return await _finish(deps, conn, cmd, changes, message, report)


# --- MobiClocks reference entities and two-way links ---------------------------------------


async def apply_reference_event(deps: ConnectionDeps, event: ReferenceUpserted | ReferenceDeleted) -> list[Change]:
    """Store MobiClocks reference entities; in two-way accounts their linked Procore ids are the mappings.

    A redelivered event changes nothing and emits nothing: its changes were queued with the first delivery.
    """
    async with deps.pool.acquire() as conn, conn.transaction():
        await repo.lock_account(conn, event.account_id)
        await repo.save_reference(conn, event)
        if not await repo.is_two_way(conn, event.account_id):
            return []
        entity = domain.two_way_entity(event.kind)
        linked = event.linked_procore_id if isinstance(event, ReferenceUpserted) else None
        name = event.name if isinstance(event, ReferenceUpserted) else None
        changes = await _link(conn, event.account_id, entity, event.entity_id, linked, name)
        await deps.emit(conn, changes)
        return changes


async def _link(
    conn: asyncpg.Connection,
    account_id: str,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    linked: int | None,
    name: str | None,
) -> list[Change]:
    """Make one two-way mapping equal the linked id (cost codes: in the project the linked code belongs to)."""
    project: int | None = None
    if entity is ProcoreEntity.COST_CODE and linked is not None:
        project = await repo.project_of_cost_code(conn, account_id, linked)
    changes: list[Change] = []
    stale = [
        m
        for m in await repo.mappings_of_entity(conn, account_id, entity)
        if m.mobiclocks_id == mobiclocks_id and (linked is None or m.procore_project_id != (project or 0))
    ]
    for m in stale:
        scope = m.procore_project_id or None
        if await repo.set_mapping(conn, account_id, entity, mobiclocks_id, scope, None, "two_way", None):
            changes.append(_changed(account_id, entity, mobiclocks_id, m.procore_project_id, None))
    if linked is not None and await repo.set_mapping(
        conn, account_id, entity, mobiclocks_id, project, linked, "two_way", None
    ):
        known = await repo.procore_name(conn, account_id, entity, project, linked)
        changes.append(_changed(account_id, entity, mobiclocks_id, project, linked, known or name))
    return changes


async def adopt_two_way_links(conn: asyncpg.Connection, account_id: str) -> list[Change]:
    """Two-way: the mappings become exactly the links carried by the MobiClocks reference entities."""
    links = {
        (domain.two_way_entity(kind), entity_id): (linked, name)
        for kind, entity_id, linked, name in await repo.linked_references(conn, account_id)
    }
    changes: list[Change] = []
    for m in await repo.all_mappings(conn, account_id):
        if (m.entity, m.mobiclocks_id) not in links:
            project = m.procore_project_id or None
            if await repo.set_mapping(conn, account_id, m.entity, m.mobiclocks_id, project, None, "two_way", None):
                changes.append(_changed(account_id, m.entity, m.mobiclocks_id, m.procore_project_id, None))
    for (entity, mobiclocks_id), (linked, name) in sorted(links.items()):
        changes += await _link(conn, account_id, entity, mobiclocks_id, linked, name)
    return changes
