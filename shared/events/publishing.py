"""`publish.commands` (staff ask to publish entries) and `procore.publish-requests` / `procore.publish-results` (the
aggregator asks the publisher to make Procore hold one entry; the publisher answers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self
from uuid import UUID, uuid4

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    StringConstraints,
    model_validator,
)

from shared.events.envelope import Command, Contract, Envelope, Id, Module, ProcoreId


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


class ProcoreOperation(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPLACE = "replace"
    """Delete the published record, then create the current content (a Deleted entry with timelogs left)."""


class TimecardClock(BaseModel):
    """A timecard entry's own clock times, from its timelogs: what a project whose timesheet takes start and stop
    times needs (`time_in`, `time_out`, `lunch_time`). Computed by the aggregator when it sends the request."""

    first_in: AwareDatetime | None = None
    """The earliest clock-in of the entry's timelogs (None with `durations_only`)."""
    last_out: AwareDatetime | None = None
    """The latest clock-out."""
    lunch_minutes: Annotated[int, Field(ge=0)] = 0
    """The gaps between the timelogs (time between first in and last out not covered by any), as lunch."""
    durations_only: bool = False
    """Some timelog of the entry has a duration only (no clock-in/clock-out): there are no times to send."""

    @classmethod
    def of_spans(cls, spans: Sequence[tuple[datetime | None, datetime | None]]) -> TimecardClock:
        """From each timelog's (clock_in, clock_out): first in, last out, uncovered time as lunch (never invented)."""
        if not spans or any(start is None or end is None for start, end in spans):
            return cls(durations_only=True)
        ordered = sorted((start, end) for start, end in spans if start is not None and end is not None)
        covered = timedelta()
        cursor = ordered[0][0]
        for start, end in ordered:
            start = max(start, cursor)
            if end > start:
                covered += end - start
                cursor = end
        first_in, last_out = ordered[0][0], max(end for _, end in ordered)
        gaps = (last_out - first_in) - covered
        return cls(first_in=first_in, last_out=last_out, lunch_minutes=round(gaps.total_seconds() / 60))


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
    clock: TimecardClock | None = None
    """Timecards: the entry's clock times, for projects whose timesheet takes start and stop times."""
    person_name: str | None = None
    """Timecards: the Procore person's name (for a Failed reason that names them)."""
    project_name: str | None = None
    """The Procore project's name (for Failed reasons)."""

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
