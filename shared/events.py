"""Event contracts: the versioned envelope and every message that crosses a Kafka topic.

Commands are imperative (`PublishEntries`), events past tense (`TimelogDeleted`).
Every message carries `event_id`, `occurred_at`, `account_id` and `schema_version`;
the W3C trace context travels in Kafka headers (set by the telemetry middleware).
Each topic carries a discriminated union on `type`, so one subscriber per topic can
validate any message on it and dead-letter what does not fit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from uuid import UUID, uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

SCHEMA_VERSION = 1

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
"""An opaque MobiClocks identifier (accounts, timelogs, employees, job sites, …)."""

ProcoreId = Annotated[int, Field(gt=0, lt=2**63)]
"""Procore ids are 64-bit integers."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Module(StrEnum):
    MANPOWER = "manpower"
    TIMECARD = "timecard"
    PRODUCTION_QUANTITY = "production_quantity"


# --- who asked: the requester of a command ------------------------------------------------


class Permission(StrEnum):
    """The role permissions a command needs; the service that owns the data checks them."""

    PUBLISH = "procore.publish"
    """Publish, republish and force publish entries (checked by the aggregator)."""
    MAPPING = "procore.mapping"
    """The role permission "Procore Connect data mapping" (checked by the mapping service)."""
    SETUP = "procore.setup"
    """Administration > Integrations > Procore > Setup (checked by the mapping service)."""


PERMISSION_LABEL: dict[Permission, str] = {
    Permission.PUBLISH: "Procore publishing",
    Permission.MAPPING: "Procore Connect data mapping",
    Permission.SETUP: "Procore setup (administrator)",
}


class RequesterKind(StrEnum):
    USER = "user"
    """A dashboard user: the gateway copies the user id and permissions from the verified token."""
    SYSTEM = "system"
    """A back-end caller acting on its own behalf (MobiClocks core, the dev demo, an operator tool), named by
    `requested_by` ("system:<name>") with the permissions it was given."""


Permissions = list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None
"""The requester's permissions. Fail closed: a command without a list (None) is refused by the service that owns
the data, recorded as rejected with the reason; there is no implicit "trusted backend". A back-end caller sends as a
named system principal (`SystemPrincipal`) with the permissions it needs. The gateway always sends the user's list,
copied from the verified token."""

SYSTEM_NAME = r"^system:[a-z0-9][a-z0-9._-]{0,55}$"


@dataclass(frozen=True)
class SystemPrincipal:
    """A named back-end caller and the permissions it is given (nothing is implied by being a back end)."""

    name: str
    permissions: tuple[Permission, ...]

    def __post_init__(self) -> None:
        if re.fullmatch(SYSTEM_NAME, self.name) is None:
            raise ValueError(f"a system principal is named system:<name>, not {self.name!r}")

    def requester(self) -> dict[str, Any]:
        """The requester fields of a command sent by this principal: `Command(..., **principal.requester())`."""
        return {
            "requested_by": self.name,
            "requester_kind": RequesterKind.SYSTEM,
            "permissions": sorted(p.value for p in self.permissions),
        }


NO_PERMISSIONS = (
    "the command names no permissions of its requester, so it is refused (fail closed): a back-end caller sends "
    "as a named system principal with the permissions it needs"
)


def permission_refusal(needed: Permission, permissions: Sequence[str] | None) -> str | None:
    """Why the requester of a command may not do this (None: it may). Used by each service that owns the data."""
    if permissions is None:
        return NO_PERMISSIONS
    if needed.value not in permissions:
        return f"this needs the permission {needed.value!r} ({PERMISSION_LABEL[needed]})"
    return None


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(Contract):
    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    account_id: Id
    schema_version: Literal[1] = 1


class Command(Envelope):
    """A command names who asked for it and with which permissions; the service owning the data checks them."""

    requested_by: Id
    """The user's id (from the verified token), or a system principal's name ("system:<name>")."""
    requester_kind: RequesterKind = RequesterKind.USER
    permissions: Permissions = None

    @model_validator(mode="after")
    def _system_is_named(self) -> Self:
        if self.requester_kind is RequesterKind.SYSTEM and re.fullmatch(SYSTEM_NAME, self.requested_by) is None:
            raise ValueError("requested_by of a system requester is system:<name>")
        return self


# --- mobiclocks.timelogs ---------------------------------------------------------------


class Quantity(Contract):
    cost_code_id: Id
    unit_of_measure: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    units: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=4)]


class TimelogUpserted(Envelope):
    """The whole current state of one timelog."""

    type: Literal["timelog.upserted"] = "timelog.upserted"
    timelog_id: Id
    revision: Annotated[int, Field(ge=0)]
    employee_id: Id
    company_id: Id
    crew_tag: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    job_site_id: Id
    work_date: date
    clock_in: AwareDatetime | None = None
    clock_out: AwareDatetime | None = None
    duration_seconds: Annotated[int, Field(ge=0, le=7 * 24 * 3600)] | None = None
    cost_code_id: Id | None = None
    pay_class_id: Id | None = None
    pay_id: Id
    quantities: list[Quantity] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_a_duration(self) -> Self:
        if self.duration_seconds is None:
            if self.clock_in is None or self.clock_out is None:
                raise ValueError("a timelog needs clock_in and clock_out, or duration_seconds")
            if self.clock_out < self.clock_in:
                raise ValueError("clock_out is before clock_in")
            if self.clock_out - self.clock_in > timedelta(days=7):
                raise ValueError("clock_out is more than 7 days after clock_in")
        return self

    @property
    def seconds(self) -> int:
        if self.duration_seconds is not None:
            return self.duration_seconds
        assert self.clock_in is not None and self.clock_out is not None
        return int((self.clock_out - self.clock_in).total_seconds())


class TimelogDeleted(Envelope):
    type: Literal["timelog.deleted"] = "timelog.deleted"
    timelog_id: Id
    revision: Annotated[int, Field(ge=0)]


TimelogEvent = Annotated[TimelogUpserted | TimelogDeleted, Field(discriminator="type")]


# --- mobiclocks.reference --------------------------------------------------------------


class ReferenceKind(StrEnum):
    COMPANY = "company"
    JOB_SITE = "job_site"
    EMPLOYEE = "employee"
    PAY_CLASS = "pay_class"
    COST_CODE = "cost_code"
    PAY_ID = "pay_id"


class ReferenceUpserted(Envelope):
    type: Literal["reference.upserted"] = "reference.upserted"
    kind: ReferenceKind
    entity_id: Id
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    number: Annotated[str, StringConstraints(max_length=64)] | None = None
    linked_procore_id: ProcoreId | None = None
    """Two-way accounts: the Procore entity this MobiClocks entity is linked to."""


class ReferenceDeleted(Envelope):
    type: Literal["reference.deleted"] = "reference.deleted"
    kind: ReferenceKind
    entity_id: Id


ReferenceEvent = Annotated[ReferenceUpserted | ReferenceDeleted, Field(discriminator="type")]


# --- publish.commands ------------------------------------------------------------------


class PublishAction(StrEnum):
    PUBLISH = "publish"
    REPUBLISH = "republish"
    FORCE_PUBLISH = "force_publish"


class CellScope(Contract):
    kind: Literal["cell"] = "cell"
    job_site_id: Id
    work_date: date


class EntriesScope(Contract):
    kind: Literal["entries"] = "entries"
    entry_ids: Annotated[list[UUID], Field(min_length=1, max_length=10_000)]


class DateRangeScope(Contract):
    kind: Literal["date_range"] = "date_range"
    date_from: date
    date_to: date

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.date_to < self.date_from:
            raise ValueError("date_to is before date_from")
        if (self.date_to - self.date_from).days > 366:
            raise ValueError("a date range spans at most 366 days")
        return self


PublishScope = Annotated[CellScope | EntriesScope | DateRangeScope, Field(discriminator="kind")]


class PublishEntries(Command):
    """Office staff asked to publish, republish or force publish some entries of one module."""

    type: Literal["publish.entries"] = "publish.entries"
    module: Module
    action: PublishAction
    scope: PublishScope


PublishCommand = Annotated[PublishEntries, Field(discriminator="type")]


# --- procore.publish-requests / procore.publish-results ------------------------------


class ProcoreOperation(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPLACE = "replace"
    """Delete the published record, then create the current content (a Deleted entry with timelogs left)."""


class PublishToProcore(Envelope):
    """Everything the publisher needs to make Procore hold exactly this entry's content."""

    type: Literal["procore.publish"] = "procore.publish"
    request_id: UUID = Field(default_factory=uuid4)
    entry_id: UUID
    entry_version: Annotated[int, Field(ge=0)]
    module: Module
    operation: ProcoreOperation
    procore_company_id: ProcoreId
    procore_project_id: ProcoreId
    work_date: date
    payload: dict[str, Any]
    """The Procore-shaped record (without the wrapper key), mapped ids included."""
    marker: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """A short tag of our entry written into Procore so a lost record can be found and adopted."""
    procore_id: ProcoreId | None = None
    published_updated_at: AwareDatetime | None = None
    """Procore's `updated_at` as our last publish left the record: the conflict-detection baseline."""
    published_payload: dict[str, Any] | None = None
    force: bool = False

    @model_validator(mode="after")
    def _target_known(self) -> Self:
        if self.operation in (ProcoreOperation.UPDATE, ProcoreOperation.DELETE) and self.procore_id is None:
            raise ValueError(f"operation {self.operation.value} needs procore_id")
        return self


PublishRequest = Annotated[PublishToProcore, Field(discriminator="type")]


class PublishOutcome(StrEnum):
    PUBLISHED = "published"
    DELETED = "deleted"
    CONFLICT = "conflict"
    FAILED = "failed"


class ProcorePublishFinished(Envelope):
    """The publisher's answer to one `PublishToProcore` request."""

    type: Literal["procore.publish_finished"] = "procore.publish_finished"
    request_id: UUID
    entry_id: UUID
    entry_version: Annotated[int, Field(ge=0)]
    module: Module
    outcome: PublishOutcome
    procore_id: ProcoreId | None = None
    procore_updated_at: AwareDatetime | None = None
    published_payload: dict[str, Any] | None = None
    message: str | None = None


PublishResult = Annotated[ProcorePublishFinished, Field(discriminator="type")]


# --- mapping.commands (gateway → mapping) and mapping.changes (mapping → everyone) ----


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


class ConfigureSetup(Command):
    type: Literal["setup.configure"] = "setup.configure"
    procore_company_id: ProcoreId | None = None
    enabled_modules: list[Module]
    two_way: bool = False


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


class MappingChanged(Envelope):
    type: Literal["mapping.changed"] = "mapping.changed"
    entity: ProcoreEntity
    mobiclocks_id: Id
    procore_id: ProcoreId | None
    procore_project_id: ProcoreId | None = None
    procore_name: str | None = None
    broken_reason: str | None = None
    """Set when the mapping was cleared because its Procore entity disappeared from Procore."""


MappingChange = Annotated[SetupChanged | MappingChanged, Field(discriminator="type")]


# --- helpers ---------------------------------------------------------------------------

TOPIC_CONTRACTS: dict[str, Any] = {
    "timelogs": TimelogEvent,
    "reference": ReferenceEvent,
    "publish_commands": PublishCommand,
    "publish_requests": PublishRequest,
    "publish_results": PublishResult,
    "mapping_commands": MappingCommand,
    "mapping_changes": MappingChange,
}


def adapter(contract: Any) -> TypeAdapter[Any]:
    """A validator for a topic's union (used by tests, tools and the dead-letter path)."""
    return TypeAdapter(contract)
