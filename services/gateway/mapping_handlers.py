"""Gateway use cases of the Setup and Data mapping screens.

Queries read the mapping service's read model (MAPPING_SCHEMA); commands go to mapping.commands
carrying the requester and their permissions, which the mapping service checks again. Every
query and command is scoped to the signed-in user's account. Connecting to Procore is the exception:
the authorization code and a customer's client secret go to the mapping service's internal HTTP API,
never onto Kafka.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.gateway import mapping_rules as rules
from services.gateway.adapters import mapping_model as model
from services.gateway.adapters.mapping_internal import Authorization, MappingInternal
from services.gateway.domain import InvalidInput, NotFound, Permission, Principal, require
from services.gateway.handlers import CommandBus
from services.gateway.views import (
    Accepted,
    AutoMapReport,
    CommandOutcome,
    Connection,
    MappingOverview,
    MappingRow,
    MappingTab,
    ProcoreCompany,
    ProcoreOption,
    ProjectOption,
    SyncInfo,
)
from shared.events import (
    AutoMap,
    DisconnectProcore,
    ProcoreEntity,
    SyncProcoreEntities,
    UnbindProcoreCompany,
)


def _permissions(who: Principal) -> list[str]:
    return sorted(who.permissions)


# --- setup: connection ---------------------------------------------------------------------


async def connection(conn: asyncpg.Connection, schema: str, who: Principal) -> Connection:
    """The account's Procore connection, the companies bound to it (never another account's), and the setup."""
    require(who, Permission.SETUP)
    row = await model.connection(conn, schema, who.account_id)
    setup = await model.setup(conn, schema, who.account_id)
    companies = [
        ProcoreCompany(procore_company_id=c.procore_company_id, name=c.name, is_active=c.is_active, proof=c.proof)
        for c in await model.companies(conn, schema, who.account_id)
    ]
    base = {
        "companies": companies,
        "procore_company_id": setup.procore_company_id if setup else None,
        "enabled_modules": setup.enabled_modules if setup else [],
        "two_way": setup.two_way if setup else False,
    }
    if row is None:
        return Connection(status="not_connected", **base)
    return Connection(
        status=row["status"],
        grant=row["grant_type"],
        message=row["message"],
        connected_by=row["connected_by"],
        connected_at=row["connected_at"],
        refreshed_at=row["refreshed_at"],
        expires_at=row["expires_at"],
        **base,
    )


async def authorize(mapping: MappingInternal, who: Principal, redirect_uri: str) -> Authorization:
    """Start an authorization request at the mapping service: Procore's authorize URL (random single-use state,
    PKCE when enabled) and the nonce this browser must bring back to the callback."""
    require(who, Permission.SETUP)
    return await mapping.start_authorization(who.account_id, who.user_id, _permissions(who), redirect_uri)


async def complete_connection(mapping: MappingInternal, state: str, browser_nonce: str, code: str) -> UUID:
    """The OAuth callback: the mapping service checks the state against this browser's nonce (single use, in
    time), exchanges the code and returns the command that proves and binds the companies."""
    return await mapping.complete_authorization(state, browser_nonce, code)


async def connect_service_account(
    mapping: MappingInternal, who: Principal, client_id: str, client_secret: str
) -> Accepted:
    """Connect with the customer's own service account (its client id and secret, created in its Procore company)."""
    require(who, Permission.SETUP)
    command_id = await mapping.connect_service_account(
        who.account_id, who.user_id, _permissions(who), client_id, client_secret
    )
    return Accepted(command_id=command_id)


async def disconnect(bus: CommandBus, who: Principal) -> Accepted:
    """Revoke and forget the tokens; the bound companies stay the account's (unbind releases one)."""
    require(who, Permission.SETUP)
    command = DisconnectProcore(account_id=who.account_id, requested_by=who.user_id, permissions=_permissions(who))
    await bus.send_mapping(command, who.account_id)
    return Accepted(command_id=command.event_id)


async def unbind(bus: CommandBus, who: Principal, procore_company_id: int) -> Accepted:
    """Release a company bound to the account (Setup's choice of it, and its mappings, go with it)."""
    require(who, Permission.SETUP)
    command = UnbindProcoreCompany(
        account_id=who.account_id,
        procore_company_id=procore_company_id,
        requested_by=who.user_id,
        permissions=_permissions(who),
    )
    await bus.send_mapping(command, who.account_id)
    return Accepted(command_id=command.event_id)


# --- data mapping --------------------------------------------------------------------------


async def is_two_way(conn: asyncpg.Connection, schema: str, account_id: str) -> bool:
    setup = await model.setup(conn, schema, account_id)
    return setup is not None and setup.two_way


async def overview(conn: asyncpg.Connection, schema: str, who: Principal) -> MappingOverview:
    """The tabs the enabled modules need, and the mapped projects (cost codes are mapped per project)."""
    require(who, Permission.MAPPING)
    setup = await model.setup(conn, schema, who.account_id)
    two_way = setup is not None and setup.two_way
    entities = rules.tabs_for(setup.enabled_modules) if setup else []
    message = None
    if two_way:
        message = rules.TWO_WAY_CONFLICT
    elif not entities:
        message = "No Procore module is enabled: choose the modules to publish in Setup."
    projects = await model.mapped_projects(conn, schema, who.account_id)
    return MappingOverview(
        two_way=two_way,
        message=message,
        tabs=[rules.tab(e) for e in entities],
        mapped_projects=[ProjectOption(procore_project_id=p, name=n) for p, n in projects],
    )


async def mapping_tab(
    conn: asyncpg.Connection, schema: str, who: Principal, entity: ProcoreEntity, project_id: int | None
) -> MappingTab:
    """One tab: MobiClocks rows with their mapping, the Procore entities to pick from, last sync and auto-map."""
    require(who, Permission.MAPPING)
    account = who.account_id
    tab = rules.tab(entity)
    two_way = await is_two_way(conn, schema, account)
    if entity not in rules.PROJECT_SCOPED and project_id is not None:
        raise InvalidInput(("query", "procore_project_id"), f"{tab.label.lower()} are not mapped per project")
    projects = [p for p, _ in await model.mapped_projects(conn, schema, account)]

    def empty(message: str) -> MappingTab:
        return MappingTab(tab=tab, two_way=two_way, procore_project_id=project_id, message=message, rows=[],
                          procore_options=[], last_sync=None, last_auto_map=None)  # fmt: skip

    if not await model.ready(conn, schema):
        return empty("The mapping service has not started yet.")
    if entity in rules.NEEDS_MAPPED_PROJECT and not projects:
        return empty(f"Map at least one project first: {tab.label.lower()} are shown for the mapped projects.")
    if entity in rules.PROJECT_SCOPED:
        project_id = project_id or projects[0]
        if project_id not in projects:
            raise NotFound(f"Procore project {project_id} is not mapped from any job site")
    scope = project_id or 0
    rows = await model.tab_rows(conn, schema, account, entity.value, rules.mobiclocks_kind(entity), scope)
    options = await model.procore_options(
        conn, schema, account, entity.value, scope, projects if entity is ProcoreEntity.CLASSIFICATION else None
    )
    sync = await model.last_sync(conn, schema, account, entity.value, scope)
    report = await model.last_auto_map(conn, schema, account, entity.value)
    return MappingTab(
        tab=tab,
        two_way=two_way,
        procore_project_id=project_id,
        message=rules.TWO_WAY_CONFLICT if two_way else None,
        rows=[MappingRow(**r) for r in rows],
        procore_options=[ProcoreOption(procore_id=i, name=n, number=num) for i, n, num in options],
        last_sync=SyncInfo(**{**sync, "procore_project_id": sync["procore_project_id"] or None}) if sync else None,
        last_auto_map=AutoMapReport(**report) if report else None,
    )


async def sync(bus: CommandBus, who: Principal, entity: ProcoreEntity) -> Accepted:
    """Pull Procore's whole list for one tab (cost codes: of every mapped project)."""
    require(who, Permission.MAPPING)
    command = SyncProcoreEntities(
        account_id=who.account_id, entity=entity, requested_by=who.user_id, permissions=_permissions(who)
    )
    await bus.send_mapping(command, who.account_id)
    return Accepted(command_id=command.event_id)


async def auto_map(
    bus: CommandBus, who: Principal, entity: ProcoreEntity, overwrite_manual: bool, two_way: bool
) -> Accepted:
    """Map rows whose Number equals a Procore entity's number (the report is kept for the tab)."""
    require(who, Permission.MAPPING)
    rules.refuse_two_way(two_way)
    if rules.NUMBER_FIELD[entity] is None:
        raise InvalidInput(
            ("path", "entity"),
            f"auto-map needs a Number field and Procore {rules.TAB_LABEL[entity][0].lower()} have none: map by hand",
        )
    command = AutoMap(
        account_id=who.account_id,
        entity=entity,
        overwrite_manual=overwrite_manual,
        requested_by=who.user_id,
        permissions=_permissions(who),
    )
    await bus.send_mapping(command, who.account_id)
    return Accepted(command_id=command.event_id)


async def command_outcome(conn: asyncpg.Connection, schema: str, who: Principal, command_id: UUID) -> CommandOutcome:
    """What the mapping service did with a command: pending, done, rejected (why) or failed (Procore's message)."""
    found = await model.command_outcome(conn, schema, who.account_id, command_id)
    if found is None:
        return CommandOutcome(command_id=command_id, status="pending")
    return CommandOutcome(
        command_id=command_id,
        status=found.status,
        command_type=found.command_type,
        message=found.message,
        details=found.details,
        finished_at=found.finished_at,
    )
