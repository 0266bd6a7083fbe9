"""What every message carries: the versioned envelope, the command's requester fields, and the shared field types."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, Self
from uuid import UUID, uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from shared.events.requester import SYSTEM_NAME, Permissions, RequesterKind

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
