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
    ) -> None:
        self._client = client
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
                if error.status == 404:
                    return None
                raise
            if not isinstance(record, dict) or record.get("deleted_at"):
                return None
            return record

        return await self._retry(call, transient)

    async def list_day(self, work_date: date) -> list[dict[str, Any]]:
        """Every record of the project on that day (all pages)."""
        path = self.resource.collection(self._project)
        params = self.resource.list_params(work_date)

        async def call() -> list[dict[str, Any]]:
            return [r async for r in self._client.paginate(path, self._company, params)]

        return await self._retry(call, transient)

    async def create(self, payload: dict[str, Any]) -> dict[str, Any]:
        path = self.resource.collection(self._project)

        async def call() -> dict[str, Any]:
            response = await self._client.request(
                "POST", path, self._company, json=self.resource.body(payload), before_send=self._guard
            )
            record: dict[str, Any] = response.json()
            return record

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
