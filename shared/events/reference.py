"""`mobiclocks.reference`: MobiClocks reference data (companies, job sites, employees, pay classes, cost codes…)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    Field,
    StringConstraints,
)

from shared.events.envelope import Envelope, Id, ProcoreId


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
