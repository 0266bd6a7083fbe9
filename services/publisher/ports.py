"""The ports the publisher's use cases work through: the attempt log, and the Procore records of a request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Protocol

from services.publisher.adapters.attempts import Received, Started
from services.publisher.adapters.procore import BulkAnswer
from services.publisher.domain import Resource
from services.publisher.lease import Lease
from shared.events import ProcorePublishFinished, PublishToProcore


class Records(Protocol):
    """One module's records of one Procore project, as a request's company lease may write them
    (adapters.procore.ProcoreRecords; an in-memory Procore in the unit tests).

    `create` raises `MaybeCreated` when its answer does not tell whether the record was made; `get` and `update`
    answer None for a record that is gone."""

    resource: Resource
    max_attempts: int
    start_stop_projects: set[int]
    """Projects whose timesheets take start and stop times (learnt from Procore's refusals)."""

    @property
    def project_id(self) -> int: ...

    async def get(self, record_id: int) -> dict[str, Any] | None: ...
    async def list_day(self, work_date: date) -> list[dict[str, Any]]: ...
    async def list_company_timecards(self, work_date: date) -> list[dict[str, Any]]: ...
    async def list_span(self, first: date, last: date) -> list[dict[str, Any]]: ...
    async def list_company_timecards_span(self, first: date, last: date) -> list[dict[str, Any]]: ...
    async def bulk_create(self, items: list[dict[str, Any]]) -> BulkAnswer: ...
    async def create(self, payload: dict[str, Any]) -> dict[str, Any]: ...
    async def update(self, record_id: int, payload: dict[str, Any]) -> dict[str, Any] | None: ...
    async def delete(self, record_id: int) -> bool: ...


RecordsFor = Callable[[PublishToProcore, Lease], Records]


class Attempts(Protocol):
    """The attempt log port (adapters.attempts.AttemptLog). Writes made while working a request carry its lease."""

    async def receive(self, incoming: list[tuple[PublishToProcore, dict[str, str]]]) -> list[Received]: ...
    async def start(self, request_id: Any, lease: Lease) -> Started: ...
    async def note_deleted(self, request_id: Any, procore_id: int, lease: Lease) -> None: ...
    async def note_error(self, request_id: Any, message: str, lease: Lease) -> int: ...
    async def finish(
        self,
        result: ProcorePublishFinished,
        lease: Lease,
        trace: dict[str, str],
        *,
        uncertain: bool = False,
        reconciled: bool = False,
    ) -> bool: ...
