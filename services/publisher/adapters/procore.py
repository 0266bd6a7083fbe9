"""One module's records in one Procore project, each call retried only as far as it is safe.

Reads, PATCH and DELETE are idempotent: retried on any transient failure (bounded). A POST is
retried as it is only when Procore certainly did not act on it (429, or the connection never
opened); any other failure of a POST (timeout, dropped connection, 5xx) may have created the
record, so it raises `MaybeCreated` and the caller looks for the record before trying again.
Rate limits (429) do not count against the bound: the client's limiter waits for the reset,
up to `patience_s` in all.

`guard` runs immediately before every write (POST, PATCH, DELETE) goes on the wire and raises
when this instance may no longer write for the company (its lease ran out): a paused or
partitioned old owner never writes after a new one took over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from services.publisher.domain import Resource
from shared.procore import ProcoreClient, ProcoreError

T = TypeVar("T")

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class MaybeCreated(Exception):
    """A POST failed in a way that does not tell whether Procore created the record."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(describe(cause))
        self.cause = cause


def describe(error: BaseException) -> str:
    if isinstance(error, ProcoreError):
        return error.message
    if isinstance(error, httpx.TimeoutException):
        return f"Procore did not answer in time ({type(error).__name__})"
    if isinstance(error, httpx.TransportError):
        return f"Procore could not be reached ({type(error).__name__}: {error})"
    return repr(error)


def gone(error: ProcoreError) -> bool:
    """How Procore may answer a GET of a deleted Daily Log record (undocumented): 404, or a 403 that is not about the
    app's access to the company (a 200 with `deleted_at` set is read as gone too). Writes are not read so: a 403 on a
    write is a refusal (a completed day, permissions) and fails the entry with Procore's words."""
    if error.status == 404:
        return True
    return error.status == 403 and "not connected" not in error.message.lower()


def rate_limited(error: BaseException | None) -> bool:
    return isinstance(error, ProcoreError) and error.status == 429


def transient(error: BaseException) -> bool:
    if isinstance(error, ProcoreError):
        return error.transient
    return isinstance(error, httpx.TransportError)


def not_acted_on(error: BaseException) -> bool:
    """Procore certainly did not handle the call: safe to send the same POST again."""
    return rate_limited(error) or isinstance(error, _NOT_SENT)


class _Bound:
    """Stop after `max_attempts` failures that were not rate limits, or after `patience_s` in all."""

    def __init__(self, max_attempts: int, patience_s: float) -> None:
        self._max = max_attempts
        self._patience_s = patience_s
        self._failures = 0

    def __call__(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        if not rate_limited(error):
            self._failures += 1
        return self._failures >= self._max or (state.seconds_since_start or 0.0) >= self._patience_s


_backoff = wait_exponential_jitter(multiplier=0.2, max=10.0, jitter=0.2)


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    return 0.0 if rate_limited(error) else _backoff(state)  # the limiter already waits out a 429


@dataclass
class BulkAnswer:
    """What one `bulk_create` call did, item by item: the records it created, and the items it refused."""

    created: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    """`{index, origin_id, message, errors}` (the per-item shape is not documented: assumed, see the sandbox)."""


def _bulk_answer(body: Any) -> BulkAnswer | None:
    if not isinstance(body, dict) or not isinstance(body.get("timecard_entries"), list):
        return None
    refused = body.get("errors")
    return BulkAnswer(list(body["timecard_entries"]), list(refused) if isinstance(refused, list) else [])


class ProcoreRecords:
    def __init__(
        self,
        client: ProcoreClient,
        resource: Resource,
        company_id: int,
        project_id: int,
        max_attempts: int = 5,
        patience_s: float = 7200.0,
        guard: Callable[[], None] | None = None,
        start_stop_projects: set[int] | None = None,
    ) -> None:
        self._client = client
        self.start_stop_projects = start_stop_projects if start_stop_projects is not None else set()
        """Projects whose timesheet takes start and stop times (learnt from Procore's refusals, kept by the caller)."""
        self._guard = guard
        self.resource = resource
        self._company = company_id
        self._project = project_id
        self.max_attempts = max_attempts
        self._patience_s = patience_s

    async def _retry(self, call: Callable[[], Awaitable[T]], retry_on: Callable[[BaseException], bool]) -> T:
        retrying = AsyncRetrying(
            stop=_Bound(self.max_attempts, self._patience_s),
            wait=_wait,
            retry=retry_if_exception(retry_on),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, record_id: int) -> dict[str, Any] | None:
        """The record as Procore holds it now; None when it is gone."""
        path = self.resource.item(self._project, record_id)

        async def call() -> dict[str, Any] | None:
            try:
                record = await self._client.get_json(path, self._company)
            except ProcoreError as error:
                if gone(error):
                    return None
                raise
            if not isinstance(record, dict) or record.get("deleted_at"):
                return None
            return record

        return await self._retry(call, transient)

    async def _list(self, path: str, params: dict[str, Any], closed_as_empty: bool = False) -> list[dict[str, Any]]:
        """Every record the list answers (all pages); with `closed_as_empty`, [] when the tool is not open to us
        (403/404)."""

        async def call() -> list[dict[str, Any]]:
            try:
                return [r async for r in self._client.paginate(path, self._company, params)]
            except ProcoreError as error:
                if closed_as_empty and error.status in (403, 404):
                    return []
                raise

        return await self._retry(call, transient)

    async def list_day(self, work_date: date) -> list[dict[str, Any]]:
        """Every record of the project on that day (all pages)."""
        return await self._list(self.resource.collection(self._project), self.resource.list_params(work_date))

    @property
    def project_id(self) -> int:
        return self._project

    async def list_company_timecards(self, work_date: date) -> list[dict[str, Any]]:
        """The company's timecard entries of that day, whatever their approval status (the project list may answer
        pending ones only). [] when the Timecard tool is not open to us (403/404): the caller has nothing more to
        look at."""
        return await self.list_company_timecards_span(work_date, work_date)

    async def list_span(self, first: date, last: date) -> list[dict[str, Any]]:
        """Every record of the project from `first` to `last` (all pages)."""
        params = {"start_date": first.isoformat(), "end_date": last.isoformat(), **self.resource.list_filters}
        return await self._list(self.resource.collection(self._project), params)

    async def list_company_timecards_span(self, first: date, last: date) -> list[dict[str, Any]]:
        """The company's timecard entries from `first` to `last`, every approval status ([] when not open to us)."""
        path = f"/rest/v1.0/companies/{self._company}/timecard_entries"
        params = {"start_date": first.isoformat(), "end_date": last.isoformat()}
        return await self._list(path, params, closed_as_empty=True)

    async def _send_create(self, call: Callable[[], Awaitable[T]]) -> T:
        """Re-sent only while Procore certainly did not act on it; any other failure that leaves it open (the record
        may have been made) raises `MaybeCreated`."""
        try:
            return await self._retry(call, not_acted_on)
        except ProcoreError as error:
            if error.transient and not rate_limited(error):
                raise MaybeCreated(error) from error
            raise
        except httpx.TransportError as error:
            if isinstance(error, _NOT_SENT):
                raise
            raise MaybeCreated(error) from error

    async def bulk_create(self, items: list[dict[str, Any]]) -> BulkAnswer:
        """POST up to 25 timecard entries at once (v1.1 `bulk_create`). Re-sent as it is only when Procore certainly
        did not act on it; any other failure that leaves it open raises `MaybeCreated` (look before sending again).
        A 422 carrying per-item results is an answer (every item refused), not an error."""
        path = f"/rest/v1.1/projects/{self._project}/project_timecard_entries/bulk_create"

        async def call() -> BulkAnswer:
            try:
                response = await self._client.request(
                    "POST", path, self._company, json={"timecard_entries": items}, before_send=self._guard
                )
            except ProcoreError as error:
                answer = _bulk_answer(error.body) if error.status == 422 else None
                if answer is not None:
                    return answer
                raise
            answer = _bulk_answer(response.json())
            if answer is None:
                raise ProcoreError(response.status_code, f"unexpected bulk_create answer from {path}")
            return answer

        return await self._send_create(call)

    async def create(self, payload: dict[str, Any]) -> dict[str, Any]:
        path = self.resource.collection(self._project)

        async def call() -> dict[str, Any]:
            response = await self._client.request(
                "POST", path, self._company, json=self.resource.body(payload), before_send=self._guard
            )
            record: dict[str, Any] = response.json()
            return record

        return await self._send_create(call)

    async def update(self, record_id: int, payload: dict[str, Any]) -> dict[str, Any] | None:
        """PATCH; None when the record is gone."""
        path = self.resource.item(self._project, record_id)

        async def call() -> dict[str, Any] | None:
            try:
                response = await self._client.request(
                    "PATCH", path, self._company, json=self.resource.body(payload), before_send=self._guard
                )
            except ProcoreError as error:
                if error.status == 404:
                    return None
                raise
            record: dict[str, Any] = response.json()
            return record

        return await self._retry(call, transient)

    async def delete(self, record_id: int) -> bool:
        """DELETE; False when the record was already gone."""
        path = self.resource.item(self._project, record_id)

        async def call() -> bool:
            try:
                await self._client.request("DELETE", path, self._company, before_send=self._guard)
            except ProcoreError as error:
                if error.status == 404:
                    return False
                raise
            return True

        return await self._retry(call, transient)
