"""How every command runs (`handle_command`: checked, settled, recorded once), and the setup and Procore link commands.
The mapping commands are in `mapping_handlers.py`, the reference events in `reference_events.py`.

Every command is checked here, where the data lives: the requester's permission (fail closed: a command without
a permissions list is refused; back-end callers send as a named system principal), two-way
accounts, enabled tabs, one-to-one tabs. A refused command is recorded (`command_outcomes`,
which the gateway shows) with its reason; a command that Procore refused is recorded with
Procore's message. Unavailable is not invalid: a database, network or Procore outage (5xx, 429,
timeouts) is raised, so the consumer retries the command later, and is never recorded as its outcome.

Each change is written to the outbox in the transaction that makes it, with the command's outcome,
under the account's lock (one writer per account across instances). A redelivered command is not
redone: its outcome, and the changes it emitted, were committed together.

The use cases receive `ports.CommandDeps` (a unit of work over the tables, an account's Procore lists, the
revocation of tokens) and hold no SQL; `tests/unit/test_mapping_handlers*.py` run them against in-memory fakes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.mapping import domain, proof
from services.mapping.adapters.changes import Change, mapping_changed
from services.mapping.domain import Permission
from services.mapping.ports import CommandDeps, MappingStore, UnitOfWork
from services.mapping.procore_link import NeedsReauthorization, NotBound, NotConnected, bind_proven, setup_changed
from services.mapping.reference_events import adopt_two_way_links
from shared.events import (
    AutoMap,
    CompleteProcoreConnection,
    ConfigureSetup,
    ConnectionStatus,
    DisconnectProcore,
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


C = TypeVar("C", bound=Command)
UseCase = Callable[[CommandDeps, C], Awaitable[list[Change]]]
"""One command's use case: runs it and returns the changes it queued (raises Rejected to refuse it)."""


async def handle_command(deps: CommandDeps, cmd: C, use_case: UseCase[C]) -> list[Change]:
    """Run `use_case` for one command at most once in effect; returns the changes it queued on the outbox.

    Raises what is transient (the consumer retries the command); records everything else. A sync only queues
    its job here (`run_sync_job` runs it in the background and records its outcome).
    """
    async with deps.stores.reading() as store:
        if await store.is_finished(cmd.event_id):
            return []

    async def work() -> list[Change]:
        refusal = domain.refusal_for_permission(REQUIRED_PERMISSION[type(cmd)], cmd.permissions)
        if refusal is not None:
            raise Rejected(refusal)
        return await use_case(deps, cmd)

    return await settle(deps, cmd, work)


FinishJob = Callable[[MappingStore, str, str], Awaitable[None]]
"""Ends a command's background job (status, message) in the transaction that records the command's outcome."""


async def settle(
    deps: CommandDeps, cmd: Command, work: Callable[[], Awaitable[list[Change]]], finish_job: FinishJob | None = None
) -> list[Change]:
    """Run `work`; record a refusal or a permanent failure as the command's outcome; raise what is transient."""
    try:
        return await work()
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
        await record_not_done(deps.stores, cmd, "rejected", str(error), finish_job)
    except ProcoreError as error:
        if error.transient:
            raise Transient(f"Procore is unavailable ({error.status}): {error.message}") from error
        await record_not_done(deps.stores, cmd, "failed", error.message, finish_job)
    except (NotConnected, NeedsReauthorization) as error:
        await record_not_done(deps.stores, cmd, "failed", str(error), finish_job)
    except NotBound as error:
        log.warning("refused a Procore call for %s %s of %s: %s", cmd.type, cmd.event_id, cmd.account_id, error)
        await record_not_done(deps.stores, cmd, "rejected", str(error), finish_job)
    return []


async def record_done(
    store: MappingStore,
    cmd: Command,
    changes: list[Change],
    message: str,
    details: dict[str, Any] | None = None,
    finish_job: FinishJob | None = None,
) -> list[Change]:
    """Record a command as done and queue the changes it made, in the transaction that made them."""
    recorded = await store.record_outcome(
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
    if finish_job is not None:
        await finish_job(store, "done", message)
    await store.emit(changes)
    return changes


async def record_done_alone(
    deps: CommandDeps, cmd: Command, message: str, finish_job: FinishJob | None = None
) -> list[Change]:
    async with deps.stores.transaction() as store:
        return await record_done(store, cmd, [], message, None, finish_job)


async def record_not_done(
    stores: UnitOfWork, cmd: Command, status: str, message: str, finish_job: FinishJob | None = None
) -> None:
    async with stores.transaction() as store:
        await store.record_outcome(cmd.event_id, cmd.account_id, cmd.type, status, message, None, cmd.requested_by)
        if finish_job is not None:
            await finish_job(store, status, message)


# --- connection ----------------------------------------------------------------------------


REPLACED = "this Procore connection was replaced or disconnected before it was finished"


async def complete_procore_connection(deps: CommandDeps, cmd: CompleteProcoreConnection) -> list[Change]:
    """Prove which companies the new connection can act for (its own company list) and bind them.

    The tokens were stored with this command's id when they were obtained (over the internal API); a newer
    connection replaces them, and then this command has nothing left to prove.
    """
    account = cmd.account_id
    async with deps.stores.reading() as store:
        stored = await store.read_procore_link(account)
    if stored is None or stored.connect_command != cmd.event_id or stored.status is not ConnectionStatus.CONNECTED:
        raise Rejected(REPLACED)
    header = stored.service_account_company_id if stored.grant_type == "client_credentials" else None
    try:
        reached = await deps.procore_lists(account, None, header).companies(header)
    except ProcoreError as error:
        if error.status == 400 and "procore-company-id" in error.message.lower():
            raise Rejected(domain.SERVICE_ACCOUNT_NEEDS_COMPANY) from error
        raise
    async with deps.stores.transaction() as store:
        await store.lock_account(account)
        now = await store.read_procore_link(account)
        if now is None or now.connect_command != cmd.event_id or now.status is not ConnectionStatus.CONNECTED:
            raise Rejected(REPLACED)
        changes, message = await bind_proven(store, cmd, stored.grant_type, reached)
        return await record_done(store, cmd, changes, message)


async def disconnect_procore(deps: CommandDeps, cmd: DisconnectProcore) -> list[Change]:
    """Revoke and forget the tokens. The bound companies stay the account's (setup and mappings survive a
    reconnect); releasing one is `unbind_company`.

    Revoking happens before the tokens are wiped, in the same transaction: a crash in between leaves
    them stored, and the redelivered command revokes again (revoking is idempotent).
    """
    account = cmd.account_id
    async with deps.stores.transaction() as store:
        await store.lock_account(account)
        stored = await store.lock_procore_link(account)
        changes: list[Change] = []
        if stored is not None and stored.status is not ConnectionStatus.DISCONNECTED:
            await deps.revoke_tokens(stored)
            await store.set_link_status(account, ConnectionStatus.DISCONNECTED, None)
            changes.append(await setup_changed(store, account, ConnectionStatus.DISCONNECTED))
        message = "disconnected from Procore (the tokens are revoked; the companies stay connected to this account)"
        return await record_done(store, cmd, changes, message)


async def unbind_company(deps: CommandDeps, cmd: UnbindProcoreCompany) -> list[Change]:
    """Release one of the account's companies; if Setup had chosen it, the choice and its mappings go too."""
    account, company = cmd.account_id, cmd.procore_company_id
    async with deps.stores.transaction() as store:
        await store.lock_account(account)
        changes: list[Change] = []
        setup = await store.read_setup(account)
        if setup is not None and setup.procore_company_id == company:
            await store.save_setup(account, None, setup.enabled_modules, setup.two_way, cmd.requested_by)
            changes += await _forget_company(store, account)
            changes.insert(0, await _setup_change(store, account))
        released = await store.unbind(account, company)
        if released is None:
            raise Rejected(f"Procore company {company} is not connected to this account")
        message = f"Procore company {released.name} is no longer connected to this account"
        return await record_done(store, cmd, changes, message)


# --- setup ---------------------------------------------------------------------------------


async def configure_setup(deps: CommandDeps, cmd: ConfigureSetup) -> list[Change]:
    """Store the account's setup; everyone else follows the SetupChanged event.

    Choosing another Procore company clears every mapping (they point at the old company's entities);
    turning two-way on replaces the mappings with the Procore ids linked in MobiClocks.
    """
    async with deps.stores.transaction() as store:
        await store.lock_account(cmd.account_id)
        old = await store.read_setup(cmd.account_id)
        if cmd.procore_company_id is not None:
            holder = await store.holder_of(cmd.procore_company_id)
            if holder != cmd.account_id:
                raise Rejected(proof.not_bound_message(cmd.procore_company_id, holder))
        await store.save_setup(
            cmd.account_id,
            cmd.procore_company_id,
            cmd.enabled_modules,
            cmd.two_way,
            cmd.requested_by,
            cmd.auto_publish,
        )
        changes: list[Change] = [await _setup_change(store, cmd.account_id)]
        if old is not None and old.procore_company_id is not None and old.procore_company_id != cmd.procore_company_id:
            changes += await _forget_company(store, cmd.account_id)
        if cmd.two_way and not (old is not None and old.two_way):
            changes += await adopt_two_way_links(store, cmd.account_id)
        return await record_done(store, cmd, changes, "setup saved")


async def _setup_change(store: MappingStore, account_id: str) -> SetupChanged:
    setup = await store.read_setup(account_id)
    return SetupChanged(
        account_id=account_id,
        procore_company_id=setup.procore_company_id if setup else None,
        enabled_modules=setup.enabled_modules if setup else [],
        two_way=setup.two_way if setup else False,
        connection=await store.link_status(account_id),
        auto_publish=setup.auto_publish if setup else {},
    )


async def _forget_company(store: MappingStore, account_id: str) -> list[Change]:
    """The account no longer uses its Procore company: every mapping points at that company's entities."""
    changes: list[Change] = []
    for m in await store.delete_account_mappings(account_id):
        changes.append(mapping_changed(account_id, m.entity, m.mobiclocks_id, m.procore_project_id, None))
    await store.forget_procore_entities(account_id)
    return changes
