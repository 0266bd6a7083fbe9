"""`mobiclocks.timelogs`: the timelogs MobiClocks core sends (upserted whole, or deleted)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import (
    AwareDatetime,
    Field,
    StringConstraints,
    model_validator,
)

from shared.events.envelope import Contract, Envelope, Id


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
        assert self.clock_in is not None
        assert self.clock_out is not None
        return int((self.clock_out - self.clock_in).total_seconds())


class TimelogDeleted(Envelope):
    type: Literal["timelog.deleted"] = "timelog.deleted"
    timelog_id: Id
    revision: Annotated[int, Field(ge=0)]


TimelogEvent = Annotated[TimelogUpserted | TimelogDeleted, Field(discriminator="type")]
