"""`mapping.commands` (gateway → mapping) and `mapping.changes` (mapping → everyone): setup, the Procore connection,
mappings, and records changed in Procore."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    Field,
)

from shared.events.envelope import Command, Envelope, Id, Module, ProcoreId
from shared.events.reference import ReferenceKind


class ProcoreEntity(StrEnum):
    VENDOR = "vendor"
    PROJECT = "project"
    EMPLOYEE = "employee"
    CLASSIFICATION = "classification"
    COST_CODE = "cost_code"
    PAYROLL_TYPE = "payroll_type"


MOBICLOCKS_KIND_OF: dict[ProcoreEntity, ReferenceKind] = {
    ProcoreEntity.VENDOR: ReferenceKind.COMPANY,
    ProcoreEntity.PROJECT: ReferenceKind.JOB_SITE,
    ProcoreEntity.EMPLOYEE: ReferenceKind.EMPLOYEE,
    ProcoreEntity.CLASSIFICATION: ReferenceKind.PAY_CLASS,
    ProcoreEntity.COST_CODE: ReferenceKind.COST_CODE,
    ProcoreEntity.PAYROLL_TYPE: ReferenceKind.PAY_ID,
}


AutoPublishMinutes = Annotated[int, Field(ge=0, le=7 * 24 * 60)]
AutoPublish = dict[Module, AutoPublishMinutes]
"""Auto-publish (opt-in, per module): the modules whose To do and Updated entries are published automatically, each
with how many minutes after the entry last changed (never Force publish; Failed entries and conflicts are left to
a person)."""


class ConfigureSetup(Command):
    type: Literal["setup.configure"] = "setup.configure"
    procore_company_id: ProcoreId | None = None
    enabled_modules: list[Module]
    two_way: bool = False
    auto_publish: AutoPublish | None = None
    """None keeps what is stored (a client that does not know the option)."""


class SetMapping(Command):
    type: Literal["mapping.set"] = "mapping.set"
    entity: ProcoreEntity
    mobiclocks_id: Id
    procore_id: ProcoreId | None
    """None clears the mapping."""
    procore_project_id: ProcoreId | None = None
    """Cost codes and classifications are mapped per Procore project."""


class CompleteProcoreConnection(Command):
    """Finish a new Procore connection: prove which companies it can act for and bind them to the account.

    Sent by the mapping service to itself (through its outbox) once it holds the new tokens. The secrets
    that obtained them (the authorization code, a customer's client secret) never travel on Kafka: the
    gateway hands them to the mapping service over its internal HTTP API. `event_id` names the connection
    attempt whose tokens are stored.
    """

    type: Literal["procore.complete_connection"] = "procore.complete_connection"


class DisconnectProcore(Command):
    """Forget (and revoke) the account's Procore tokens. The account keeps its bound companies."""

    type: Literal["procore.disconnect"] = "procore.disconnect"


class UnbindProcoreCompany(Command):
    """Release a Procore company bound to the account (another account may then prove it and bind it)."""

    type: Literal["procore.unbind_company"] = "procore.unbind_company"
    procore_company_id: ProcoreId


class SyncProcoreEntities(Command):
    """Pull the whole Procore list of one mapping tab (cost codes: of every mapped project)."""

    type: Literal["mapping.sync"] = "mapping.sync"
    entity: ProcoreEntity


class AutoMap(Command):
    """Map the rows of one tab whose Number equals a Procore entity's number."""

    type: Literal["mapping.auto_map"] = "mapping.auto_map"
    entity: ProcoreEntity
    overwrite_manual: bool = False
    """Also replace mappings someone made by hand (never done unless asked)."""


MappingCommand = Annotated[
    ConfigureSetup
    | SetMapping
    | CompleteProcoreConnection
    | DisconnectProcore
    | UnbindProcoreCompany
    | SyncProcoreEntities
    | AutoMap,
    Field(discriminator="type"),
]


class ConnectionStatus(StrEnum):
    CONNECTED = "connected"
    NEEDS_REAUTHORIZATION = "needs_reauthorization"
    """Procore refused the stored refresh token or credentials: an administrator must connect again."""
    DISCONNECTED = "disconnected"


class SetupChanged(Envelope):
    type: Literal["setup.changed"] = "setup.changed"
    procore_company_id: ProcoreId | None
    enabled_modules: list[Module]
    two_way: bool
    connection: ConnectionStatus | None = None
    """The Procore connection's state when it changed (None: unchanged by this event, or not known)."""
    auto_publish: AutoPublish | None = None
    """See `ConfigureSetup.auto_publish` (None: unchanged by this event, or not known)."""


class MappingChanged(Envelope):
    type: Literal["mapping.changed"] = "mapping.changed"
    entity: ProcoreEntity
    mobiclocks_id: Id
    procore_id: ProcoreId | None
    procore_project_id: ProcoreId | None = None
    procore_name: str | None = None
    broken_reason: str | None = None
    """Set when the mapping was cleared because its Procore entity disappeared from Procore."""


class ProcoreChange(StrEnum):
    UPDATED = "updated"
    DELETED = "deleted"


class ProcoreRecordChanged(Envelope):
    """Someone changed (or deleted) a record in Procore: a webhook delivery, or the periodic reconcile that
    catches what deliveries missed. The mapping service sends it (it holds the hooks and the connection); the
    aggregator turns the Published entry that owns the record into Failed "changed/deleted in Procore" when the
    change is newer than our last publish. Our own writes are filtered out (by the writing application, and by
    `changed_at` not being after the published `updated_at`)."""

    type: Literal["procore.record_changed"] = "procore.record_changed"
    procore_company_id: ProcoreId
    module: Module
    procore_id: ProcoreId
    change: ProcoreChange
    changed_at: AwareDatetime | None = None
    """When Procore says it happened (the delivery's `timestamp`, the record's `updated_at` or `deleted_at`)."""
    source: Literal["webhook", "reconcile"] = "webhook"


MappingChange = Annotated[SetupChanged | MappingChanged | ProcoreRecordChanged, Field(discriminator="type")]
