"""The mapping service's command handling, setup, Procore link and reference use cases against in-memory fakes
(`tests/unit/mapping_fakes.py`: no broker, no database). The same use cases run against PostgreSQL and Kafka in
the integration tests (`test_mapping_binding`, `test_mapping_connection`, `test_mapping_outbox`,
`test_mapping_gateway`)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.mapping import handlers, proof, reference_events
from services.mapping.adapters.changes import Change
from services.mapping.adapters.mappings import StoredMapping
from services.mapping.adapters.procore_links import StoredProcoreLink
from services.mapping.adapters.setups import StoredSetup
from services.mapping.domain import SERVICE_ACCOUNT_NEEDS_COMPANY, Source
from services.mapping.ports import CommandDeps
from services.mapping.proof import Proof, ReachedCompany
from shared.events import (
    NO_PERMISSIONS,
    CompleteProcoreConnection,
    ConfigureSetup,
    ConnectionStatus,
    DisconnectProcore,
    MappingChanged,
    Module,
    ProcoreEntity,
    ReferenceDeleted,
    ReferenceKind,
    ReferenceUpserted,
    SetupChanged,
    UnbindProcoreCompany,
)
from shared.procore import ProcoreError
from shared.transient import Transient
from tests.unit.mapping_fakes import FakeDeps, KnownProcoreEntity, Reference

ACCOUNT = "acct-1"
OTHER = "acct-2"
USER = "user-1"
COMPANY = 7001
ALL = ["procore.setup", "procore.mapping"]


def _setup(**fields: Any) -> ConfigureSetup:
    values: dict[str, Any] = {"account_id": ACCOUNT, "requested_by": USER, "permissions": ALL}
    values |= {"enabled_modules": [Module.MANPOWER], "procore_company_id": COMPANY} | fields
    return ConfigureSetup(**values)


def _link(command: uuid.UUID | None, status: ConnectionStatus = ConnectionStatus.CONNECTED) -> StoredProcoreLink:
    return StoredProcoreLink(ACCOUNT, "authorization_code", status, "access", "refresh", None, None, command)


async def _bound(deps: FakeDeps, company: int = COMPANY, account: str = ACCOUNT) -> None:
    reached = [ReachedCompany(company, f"Company {company}", True)]
    await deps.store.bind(account, reached, Proof.USER_CONSENT, uuid.uuid4(), USER)


def _mapping(entity: ProcoreEntity, mobiclocks_id: str, procore_id: int, project: int = 0) -> StoredMapping:
    return StoredMapping(entity, mobiclocks_id, project, procore_id, Source.MANUAL, None)


async def _map(deps: FakeDeps, entity: ProcoreEntity, mobiclocks_id: str, procore_id: int) -> None:
    await deps.store.set_mapping(ACCOUNT, entity, mobiclocks_id, None, procore_id, "manual", USER)


# --- every command: permissions, once, what is transient -------------------------------------


async def test_a_command_without_a_permissions_list_is_refused_and_recorded() -> None:
    deps = FakeDeps()
    await _bound(deps)
    cmd = _setup(permissions=None)

    assert await handlers.handle_command(deps, cmd, handlers.configure_setup) == []

    outcome = deps.store.t.outcomes[cmd.event_id]
    assert (outcome.status, outcome.message) == ("rejected", NO_PERMISSIONS)
    assert deps.store.t.setups == {}
    assert deps.store.t.outbox == []


async def test_a_command_needs_the_permission_of_its_kind() -> None:
    deps = FakeDeps()
    await _bound(deps)
    cmd = _setup(permissions=["procore.mapping"])

    await handlers.handle_command(deps, cmd, handlers.configure_setup)

    outcome = deps.store.t.outcomes[cmd.event_id]
    assert outcome.status == "rejected"
    assert outcome.message == "this needs the Procore setup (administrator) permission"
    assert deps.store.t.setups == {}


async def test_a_redelivered_command_is_not_redone() -> None:
    deps = FakeDeps()
    await _bound(deps)
    cmd = _setup()
    first = await handlers.handle_command(deps, cmd, handlers.configure_setup)
    await deps.store.save_setup(ACCOUNT, None, [], False, USER)  # changed since: a redo would undo this

    again = await handlers.handle_command(deps, cmd, handlers.configure_setup)

    assert len(first) == 1
    assert again == []
    assert deps.store.t.setups[ACCOUNT].procore_company_id is None
    assert len(deps.store.t.outbox) == 1


async def test_a_command_handled_meanwhile_rolls_back_its_changes() -> None:
    deps = FakeDeps()
    await _bound(deps)
    cmd = _setup()

    async def raced(deps_: CommandDeps, cmd_: ConfigureSetup) -> list[Change]:
        await deps.store.record_outcome(cmd_.event_id, ACCOUNT, cmd_.type, "done", "elsewhere", None, USER)
        return await handlers.configure_setup(deps_, cmd_)

    assert await handlers.handle_command(deps, cmd, raced) == []

    assert deps.store.t.outcomes[cmd.event_id].message == "elsewhere"
    assert deps.store.t.outbox == []


# --- setup ----------------------------------------------------------------------------------


async def test_configuring_setup_saves_it_and_emits_the_setup() -> None:
    deps = FakeDeps()
    await _bound(deps)
    deps.store.t.links[ACCOUNT] = _link(uuid.uuid4())
    cmd = _setup(enabled_modules=[Module.MANPOWER, Module.TIMECARD], auto_publish={Module.MANPOWER: 30})

    changes = await handlers.handle_command(deps, cmd, handlers.configure_setup)

    assert deps.store.t.setups[ACCOUNT] == StoredSetup(
        COMPANY, [Module.MANPOWER, Module.TIMECARD], False, {Module.MANPOWER: 30}
    )
    [change] = changes
    assert isinstance(change, SetupChanged)
    assert (change.procore_company_id, change.connection) == (COMPANY, ConnectionStatus.CONNECTED)
    assert change.auto_publish == {Module.MANPOWER: 30}
    assert deps.store.t.outbox == changes
    outcome = deps.store.t.outcomes[cmd.event_id]
    assert (outcome.status, outcome.message) == ("done", "setup saved")
    assert outcome.changes == [change.model_dump(mode="json")]
    assert deps.store.locked == [ACCOUNT]


async def test_setup_refuses_a_company_the_account_has_not_connected() -> None:
    deps = FakeDeps()
    cmd = _setup()

    await handlers.handle_command(deps, cmd, handlers.configure_setup)

    outcome = deps.store.t.outcomes[cmd.event_id]
    assert (outcome.status, outcome.message) == ("rejected", proof.not_bound_message(COMPANY, None))
    assert deps.store.t.setups == {}


async def test_setup_refuses_a_company_another_account_holds() -> None:
    deps = FakeDeps()
    await _bound(deps, account=OTHER)
    cmd = _setup()

    await handlers.handle_command(deps, cmd, handlers.configure_setup)

    assert deps.store.t.outcomes[cmd.event_id].message == proof.ALREADY_BOUND
    assert deps.store.t.setups == {}


async def test_choosing_another_company_clears_every_mapping_and_synced_list() -> None:
    deps = FakeDeps()
    await _bound(deps)
    await _bound(deps, 7002)
    await deps.store.save_setup(ACCOUNT, COMPANY, [Module.MANPOWER], False, USER)
    await _map(deps, ProcoreEntity.PROJECT, "js-1", 11)
    await _map(deps, ProcoreEntity.VENDOR, "co-1", 21)
    deps.store.t.entities[(ACCOUNT, ProcoreEntity.PROJECT, 0, 11)] = KnownProcoreEntity("Tower", "T-1")
    deps.store.t.synced.add((ACCOUNT, ProcoreEntity.PROJECT, 0))

    changes = await handlers.configure_setup(deps, _setup(procore_company_id=7002))

    assert isinstance(changes[0], SetupChanged)
    cleared = {(c.entity, c.mobiclocks_id, c.procore_id) for c in changes[1:] if isinstance(c, MappingChanged)}
    assert cleared == {(ProcoreEntity.PROJECT, "js-1", None), (ProcoreEntity.VENDOR, "co-1", None)}
    assert deps.store.t.mappings == {}
    assert deps.store.t.entities == {}
    assert deps.store.t.synced == set()


async def test_turning_two_way_on_makes_the_mappings_the_linked_ids() -> None:
    deps = FakeDeps()
    await _bound(deps)
    await deps.store.save_setup(ACCOUNT, COMPANY, [Module.MANPOWER], False, USER)
    await _map(deps, ProcoreEntity.VENDOR, "co-old", 20)
    deps.store.t.references[(ACCOUNT, ReferenceKind.JOB_SITE, "js-1")] = Reference("Site 1", None, 11)
    deps.store.t.entities[(ACCOUNT, ProcoreEntity.PROJECT, 0, 11)] = KnownProcoreEntity("Tower", "T-1")

    changes = await handlers.configure_setup(deps, _setup(two_way=True))

    mapped = [
        (c.entity, c.mobiclocks_id, c.procore_id, c.procore_name) for c in changes if isinstance(c, MappingChanged)
    ]
    assert mapped == [(ProcoreEntity.VENDOR, "co-old", None, None), (ProcoreEntity.PROJECT, "js-1", 11, "Tower")]
    assert list(deps.store.t.mappings.values()) == [
        StoredMapping(ProcoreEntity.PROJECT, "js-1", 0, 11, Source.TWO_WAY, None)
    ]


# --- the Procore link -----------------------------------------------------------------------


def _complete() -> CompleteProcoreConnection:
    return CompleteProcoreConnection(account_id=ACCOUNT, requested_by=USER, permissions=ALL)


async def test_completing_a_connection_binds_the_company_it_reaches_and_chooses_it() -> None:
    deps = FakeDeps()
    cmd = _complete()
    deps.store.t.links[ACCOUNT] = _link(cmd.event_id)
    deps.procore.reached = [ReachedCompany(COMPANY, "Acme Builders", True)]

    [change] = await handlers.handle_command(deps, cmd, handlers.complete_procore_connection)

    assert deps.lists_asked == [(ACCOUNT, None, None)]  # the company-less call that proves the link
    assert await deps.store.holder_of(COMPANY) == ACCOUNT
    assert deps.store.t.bindings[COMPANY][1].proof is Proof.USER_CONSENT
    assert isinstance(change, SetupChanged)
    assert (change.procore_company_id, change.connection) == (COMPANY, ConnectionStatus.CONNECTED)
    outcome = deps.store.t.outcomes[cmd.event_id]
    assert outcome.status == "done"
    assert outcome.message is not None
    assert "Acme Builders" in outcome.message


async def test_a_company_another_account_holds_is_not_bound_again() -> None:
    deps = FakeDeps()
    await _bound(deps, account=OTHER)
    cmd = _complete()
    deps.store.t.links[ACCOUNT] = _link(cmd.event_id)
    deps.procore.reached = [ReachedCompany(COMPANY, "Acme Builders", True), ReachedCompany(7002, "Beta", True)]

    await handlers.complete_procore_connection(deps, cmd)

    assert await deps.store.holders([COMPANY, 7002]) == {COMPANY: OTHER, 7002: ACCOUNT}
    assert deps.store.t.setups[ACCOUNT].procore_company_id == 7002
    message = deps.store.t.outcomes[cmd.event_id].message
    assert message is not None
    assert "1 Procore company it reaches is already connected to another MobiClocks account" in message


async def test_a_connection_replaced_before_it_was_finished_proves_nothing() -> None:
    deps = FakeDeps()
    cmd = _complete()
    deps.store.t.links[ACCOUNT] = _link(uuid.uuid4())  # a newer connection's tokens

    await handlers.handle_command(deps, cmd, handlers.complete_procore_connection)

    assert deps.store.t.outcomes[cmd.event_id].status == "rejected"
    assert deps.store.t.outcomes[cmd.event_id].message == handlers.REPLACED
    assert deps.procore.calls == []


async def test_a_service_account_without_its_company_is_told_to_name_it() -> None:
    deps = FakeDeps()
    cmd = _complete()
    deps.store.t.links[ACCOUNT] = _link(cmd.event_id)
    deps.procore.error = ProcoreError(400, "Procore-Company-Id header is required")

    await handlers.handle_command(deps, cmd, handlers.complete_procore_connection)

    outcome = deps.store.t.outcomes[cmd.event_id]
    assert (outcome.status, outcome.message) == ("rejected", SERVICE_ACCOUNT_NEEDS_COMPANY)


async def test_procore_refusing_the_proof_is_recorded_as_failed() -> None:
    deps = FakeDeps()
    cmd = _complete()
    deps.store.t.links[ACCOUNT] = _link(cmd.event_id)
    deps.procore.error = ProcoreError(403, "forbidden")

    await handlers.handle_command(deps, cmd, handlers.complete_procore_connection)

    outcome = deps.store.t.outcomes[cmd.event_id]
    assert (outcome.status, outcome.message) == ("failed", "forbidden")


async def test_procore_unavailable_is_raised_to_retry_and_never_recorded() -> None:
    deps = FakeDeps()
    cmd = _complete()
    deps.store.t.links[ACCOUNT] = _link(cmd.event_id)
    deps.procore.error = ProcoreError(503, "down")

    with pytest.raises(Transient):
        await handlers.handle_command(deps, cmd, handlers.complete_procore_connection)

    assert deps.store.t.outcomes == {}


async def test_disconnecting_revokes_and_forgets_the_tokens_but_keeps_the_companies() -> None:
    deps = FakeDeps()
    await _bound(deps)
    await deps.store.save_setup(ACCOUNT, COMPANY, [Module.MANPOWER], False, USER)
    stored = _link(uuid.uuid4())
    deps.store.t.links[ACCOUNT] = stored
    cmd = DisconnectProcore(account_id=ACCOUNT, requested_by=USER, permissions=ALL)

    [change] = await handlers.handle_command(deps, cmd, handlers.disconnect_procore)

    assert deps.revoked == [stored]
    link = deps.store.t.links[ACCOUNT]
    assert (link.status, link.access_token, link.refresh_token) == (ConnectionStatus.DISCONNECTED, None, None)
    assert isinstance(change, SetupChanged)
    assert (change.procore_company_id, change.connection) == (COMPANY, ConnectionStatus.DISCONNECTED)
    assert await deps.store.holder_of(COMPANY) == ACCOUNT
    assert deps.store.t.outcomes[cmd.event_id].status == "done"


async def test_disconnecting_what_is_not_connected_revokes_nothing() -> None:
    deps = FakeDeps()
    deps.store.t.links[ACCOUNT] = _link(None, ConnectionStatus.DISCONNECTED)
    cmd = DisconnectProcore(account_id=ACCOUNT, requested_by=USER, permissions=ALL)

    assert await handlers.handle_command(deps, cmd, handlers.disconnect_procore) == []

    assert deps.revoked == []
    assert deps.store.t.outcomes[cmd.event_id].status == "done"


async def test_unbinding_the_chosen_company_drops_the_choice_and_its_mappings() -> None:
    deps = FakeDeps()
    await _bound(deps)
    await deps.store.save_setup(ACCOUNT, COMPANY, [Module.MANPOWER], False, USER)
    await _map(deps, ProcoreEntity.VENDOR, "co-1", 21)
    cmd = UnbindProcoreCompany(account_id=ACCOUNT, requested_by=USER, permissions=ALL, procore_company_id=COMPANY)

    changes = await handlers.handle_command(deps, cmd, handlers.unbind_company)

    assert isinstance(changes[0], SetupChanged)
    assert changes[0].procore_company_id is None
    assert [(c.mobiclocks_id, c.procore_id) for c in changes[1:] if isinstance(c, MappingChanged)] == [("co-1", None)]
    assert await deps.store.holder_of(COMPANY) is None
    assert deps.store.t.mappings == {}
    assert deps.store.t.outcomes[cmd.event_id].message == (
        f"Procore company Company {COMPANY} is no longer connected to this account"
    )


async def test_unbinding_a_company_of_another_account_changes_nothing() -> None:
    deps = FakeDeps()
    await _bound(deps, account=OTHER)
    await deps.store.save_setup(ACCOUNT, COMPANY, [Module.MANPOWER], False, USER)  # chosen, yet not this account's
    await _map(deps, ProcoreEntity.VENDOR, "co-1", 21)
    cmd = UnbindProcoreCompany(account_id=ACCOUNT, requested_by=USER, permissions=ALL, procore_company_id=COMPANY)

    await handlers.handle_command(deps, cmd, handlers.unbind_company)

    outcome = deps.store.t.outcomes[cmd.event_id]
    assert (outcome.status, outcome.message) == (
        "rejected",
        f"Procore company {COMPANY} is not connected to this account",
    )
    assert deps.store.t.setups[ACCOUNT].procore_company_id == COMPANY  # rolled back with the refusal
    assert len(deps.store.t.mappings) == 1
    assert await deps.store.holder_of(COMPANY) == OTHER
    assert deps.store.t.outbox == []


# --- MobiClocks reference entities ----------------------------------------------------------


def _upserted(kind: ReferenceKind, entity_id: str, linked: int | None = None) -> ReferenceUpserted:
    return ReferenceUpserted(account_id=ACCOUNT, kind=kind, entity_id=entity_id, name="Row", linked_procore_id=linked)


async def test_a_reference_of_a_one_way_account_is_stored_and_emits_nothing() -> None:
    deps = FakeDeps()
    event = _upserted(ReferenceKind.JOB_SITE, "js-1", linked=11)

    assert await reference_events.apply_reference_event(deps.stores, event) == []

    assert deps.store.t.references[(ACCOUNT, ReferenceKind.JOB_SITE, "js-1")] == Reference("Row", None, 11)
    assert deps.store.t.mappings == {}
    assert deps.store.t.outbox == []


async def test_a_two_way_link_is_the_mapping_and_its_removal_clears_it() -> None:
    deps = FakeDeps()
    await deps.store.save_setup(ACCOUNT, COMPANY, [Module.MANPOWER], True, USER)

    linked = await reference_events.apply_reference_event(deps.stores, _upserted(ReferenceKind.JOB_SITE, "js-1", 11))
    deleted = ReferenceDeleted(account_id=ACCOUNT, kind=ReferenceKind.JOB_SITE, entity_id="js-1")
    cleared = await reference_events.apply_reference_event(deps.stores, deleted)

    assert [(c.mobiclocks_id, c.procore_id, c.procore_name) for c in linked if isinstance(c, MappingChanged)] == [
        ("js-1", 11, "Row")
    ]
    assert [(c.mobiclocks_id, c.procore_id) for c in cleared if isinstance(c, MappingChanged)] == [("js-1", None)]
    assert deps.store.t.outbox == [*linked, *cleared]
    assert deps.store.t.references[(ACCOUNT, ReferenceKind.JOB_SITE, "js-1")].deleted


async def test_a_two_way_cost_code_is_mapped_in_the_project_its_code_belongs_to() -> None:
    deps = FakeDeps()
    await deps.store.save_setup(ACCOUNT, COMPANY, [Module.TIMECARD], True, USER)
    deps.store.t.entities[(ACCOUNT, ProcoreEntity.COST_CODE, 11, 501)] = KnownProcoreEntity("Concrete", "03-100")

    [change] = await reference_events.apply_reference_event(deps.stores, _upserted(ReferenceKind.COST_CODE, "cc", 501))

    assert isinstance(change, MappingChanged)
    assert (change.procore_project_id, change.procore_id, change.procore_name) == (11, 501, "Concrete")
    assert (ACCOUNT, ProcoreEntity.COST_CODE, "cc", 11) in deps.store.t.mappings
