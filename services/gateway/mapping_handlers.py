"""Gateway use cases of the Setup and Data mapping screens.

Queries read the mapping service's read model (MAPPING_SCHEMA); commands go to mapping.commands
carrying the requester and their permissions, which the mapping service checks again. Every
query and command is scoped to the signed-in user's account. Connecting to Procore is the exception:
the authorization code and a customer's client secret go to the mapping service's internal HTTP API,
never onto Kafka.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol
from uuid import UUID

from services.gateway import mapping_rules as rules
from services.gateway.adapters.mapping_internal import Authorization, MappingInternal, MappingRefused
from services.gateway.adapters.mapping_model import BoundCompany, MappingSetup, Outcome
from services.gateway.failures import InvalidInput, NotFound
from services.gateway.handlers import CommandBus
from services.gateway.permissions import require
from services.gateway.schemas import (
    Accepted,
    AutoMapReport,
    CommandOutcome,
    MappingOverview,
    MappingRow,
    MappingTab,
    ProcoreCompany,
    ProcoreConnection,
    ProcoreOption,
    ProjectOption,
    SyncInfo,
    WebhookStatus,
)
from services.gateway.tokens import Principal
from shared.events import (
    AutoMap,
    DisconnectProcore,
    Permission,
    ProcoreEntity,
    SyncProcoreEntities,
    UnbindProcoreCompany,
)


def _permissions(who: Principal) -> list[str]:
    return sorted(who.permissions)


class MappingReads(Protocol):
    """The mapping service's read contract as the query use cases read it (`adapters.read_contracts.ReadContracts`),
    in one read-only transaction."""

    async def mapping_ready(self) -> bool: ...
    async def mapping_setup(self, account_id: str) -> MappingSetup | None: ...
    async def procore_connection(self, account_id: str) -> dict[str, Any] | None: ...
    async def webhook_status(self, account_id: str, company_id: int) -> dict[str, Any] | None: ...
    async def companies(self, account_id: str) -> list[BoundCompany]: ...
    async def mapped_procore_projects(self, account_id: str) -> list[tuple[int, str]]: ...
    async def tab_rows(self, account_id: str, entity: str, kind: str, project_id: int) -> list[dict[str, Any]]: ...
    async def procore_options(
        self, account_id: str, entity: str, project_id: int, in_projects: list[int] | None
    ) -> list[tuple[int, str, str | None]]: ...
    async def last_sync(self, account_id: str, entity: str, project_id: int) -> dict[str, Any] | None: ...
    async def last_auto_map(self, account_id: str, entity: str) -> dict[str, Any] | None: ...
    async def command_outcome(self, account_id: str, command_id: UUID) -> Outcome | None: ...
    async def directory_gaps(self, account_id: str) -> dict[str, list[str]]: ...


# --- setup: connection ---------------------------------------------------------------------


async def procore_connection(reads: MappingReads, who: Principal) -> ProcoreConnection:
    """The account's Procore connection, the companies bound to it (never another account's), and the setup."""
    require(who, Permission.SETUP)
    row = await reads.procore_connection(who.account_id)
    setup = await reads.mapping_setup(who.account_id)
    companies = [
        ProcoreCompany(procore_company_id=c.procore_company_id, name=c.name, is_active=c.is_active, proof=c.proof)
        for c in await reads.companies(who.account_id)
    ]
    base = {
        "companies": companies,
        "procore_company_id": setup.procore_company_id if setup else None,
        "enabled_modules": setup.enabled_modules if setup else [],
        "two_way": setup.two_way if setup else False,
    }
    if row is None:
        return ProcoreConnection(status="not_connected", **base)
    chosen = setup.procore_company_id if setup else None
    hooks = await reads.webhook_status(who.account_id, chosen) if chosen else None
    return ProcoreConnection(
        webhooks=WebhookStatus(**hooks) if hooks else None,
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
    mapping: MappingInternal, who: Principal, client_id: str, client_secret: str, company_id: int | None = None
) -> Accepted:
    """Connect with the customer's own service account (its client id and secret, created in its Procore company)."""
    require(who, Permission.SETUP)
    command_id = await mapping.connect_service_account(
        who.account_id, who.user_id, _permissions(who), client_id, client_secret, company_id
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


async def is_two_way(reads: MappingReads, account_id: str) -> bool:
    setup = await reads.mapping_setup(account_id)
    return setup is not None and setup.two_way


async def overview(reads: MappingReads, who: Principal) -> MappingOverview:
    """The tabs the enabled modules need, and the mapped projects (cost codes are mapped per project)."""
    require(who, Permission.MAPPING)
    setup = await reads.mapping_setup(who.account_id)
    two_way = setup is not None and setup.two_way
    entities = rules.tabs_for(setup.enabled_modules) if setup else []
    message = None
    if two_way:
        message = rules.TWO_WAY_CONFLICT
    elif not entities:
        message = "No Procore module is enabled: choose the modules to publish in Setup."
    projects = await reads.mapped_procore_projects(who.account_id)
    return MappingOverview(
        two_way=two_way,
        message=message,
        tabs=[rules.tab(e) for e in entities],
        mapped_projects=[ProjectOption(procore_project_id=p, name=n) for p, n in projects],
    )


async def mapping_tab(
    reads: MappingReads,
    who: Principal,
    entity: ProcoreEntity,
    project_id: int | None,
) -> MappingTab:
    """One tab: MobiClocks rows with their mapping, the Procore entities to pick from, last sync and auto-map."""
    require(who, Permission.MAPPING)
    account = who.account_id
    tab = rules.tab(entity)
    two_way = await is_two_way(reads, account)
    if entity not in rules.PROJECT_SCOPED and project_id is not None:
        raise InvalidInput(("query", "procore_project_id"), f"{tab.label.lower()} are not mapped per project")
    projects = [p for p, _ in await reads.mapped_procore_projects(account)]

    def empty(message: str) -> MappingTab:
        return MappingTab(
            tab=tab,
            two_way=two_way,
            procore_project_id=project_id,
            message=message,
            rows=[],
            procore_options=[],
            last_sync=None,
            last_auto_map=None,
        )

    if not await reads.mapping_ready():
        return empty("The mapping service has not started yet.")
    if entity in rules.NEEDS_MAPPED_PROJECT and not projects:
        return empty(f"Map at least one project first: {tab.label.lower()} are shown for the mapped projects.")
    if entity in rules.PROJECT_SCOPED:
        project_id = project_id or projects[0]
        if project_id not in projects:
            raise NotFound(f"Procore project {project_id} is not mapped from any job site")
    scope = project_id or 0
    rows = await reads.tab_rows(account, entity.value, rules.mobiclocks_kind(entity), scope)
    if entity is ProcoreEntity.EMPLOYEE and rows:
        gaps = await reads.directory_gaps(account)  # {} until both services have published their read contracts
        for row in rows:
            if missing := gaps.get(row["mobiclocks_id"]):
                row["warning"] = rules.directory_warning(missing)
    options = await reads.procore_options(
        account, entity.value, scope, projects if entity is ProcoreEntity.CLASSIFICATION else None
    )
    sync = await reads.last_sync(account, entity.value, scope)
    report = await reads.last_auto_map(account, entity.value)
    return MappingTab(
        tab=tab,
        two_way=two_way,
        procore_project_id=project_id,
        message=rules.TWO_WAY_CONFLICT if two_way else rules.empty_tab_message(entity, bool(rows), bool(options), sync),
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
            f"Auto-map needs a Number field and Procore {rules.TAB_LABEL[entity].lower()} have none: map them by hand",
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


async def command_outcome(reads: MappingReads, who: Principal, command_id: UUID) -> CommandOutcome:
    """What the mapping service did with a command: pending, done, rejected (why) or failed (Procore's message)."""
    found = await reads.command_outcome(who.account_id, command_id)
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


# --- Procore webhooks --------------------------------------------------------------------------------------------


def webhook_sender(authorization: str | None) -> str:
    """The rate-limit key of a delivery: a digest of its Authorization header (never the secret itself)."""
    return "hook:" + hashlib.sha256((authorization or "").encode()).hexdigest()[:16]


async def take_webhook(internal: MappingInternal, authorization: str | None, raw: bytes) -> str:
    """Pass a delivery to the mapping service; `MappingRefused` 400 when it is not JSON."""
    try:
        event = json.loads(raw)
    except ValueError as error:
        raise MappingRefused(400, "the body is not JSON") from error
    if not isinstance(event, dict):
        raise MappingRefused(400, "the body is not a webhook event")
    return await internal.webhook_delivery(authorization, event)
