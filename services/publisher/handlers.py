"""Publisher use cases: take each request once, then make Procore hold exactly one record with the entry's content."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import TypeAdapter

from services.publisher import domain
from services.publisher.adapters.attempts import Pending, Received, Started
from services.publisher.adapters.procore import MaybeCreated, ProcoreRecords
from services.publisher.domain import Lease, LeaseLost, Step
from services.publisher.failures import Failure, classify, message_for
from shared.events import ProcoreOperation, ProcorePublishFinished, PublishOutcome, PublishRequest, PublishToProcore
from shared.outbox import trace_headers
from shared.procore import ProcoreError
from shared.records import parse_records

log = logging.getLogger(__name__)
_request: TypeAdapter[PublishToProcore] = TypeAdapter(PublishRequest)

RecordsFor = Callable[[PublishToProcore, Lease], ProcoreRecords]


class DeadLetterSink(Protocol):
    async def send(self, record: Any, reason: str, headers: dict[str, str] | None = None) -> None: ...


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


def parse_requests(
    records: Sequence[Any],
) -> tuple[list[tuple[PublishToProcore, dict[str, str]]], list[tuple[Any, str]]]:
    """Kafka records → (request, its trace context) pairs, and (record, reason) for what cannot be read."""
    parsed, rejects = parse_records(records, _request)
    valid: list[tuple[PublishToProcore, dict[str, str]]] = []
    for record, request in parsed:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        valid.append((request, {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}))
    return valid, rejects


async def accept_records(
    records: Sequence[Any],
    attempts: Attempts,
    wake: Callable[[int], None],
    dead_letters: DeadLetterSink,
) -> int:
    """Store a batch of publish requests, each once; one answered before has its stored result queued again.

    Returns how many results were queued again (the caller wakes the outbox relay)."""
    valid, rejects = parse_requests(records)
    for record, reason in rejects:
        await dead_letters.send(record, reason)
    if not valid:
        return 0
    again = 0
    for (request, _), received in zip(valid, await attempts.receive(valid), strict=True):
        if received.state == "done":
            again += received.result is not None
        else:
            wake(request.procore_company_id)
    return again


async def process_request(
    pending: Pending, lease: Lease, attempts: Attempts, records_for: RecordsFor, max_tries: int = 8
) -> ProcorePublishFinished:
    """Send one stored request to Procore, then store its result and queue its event together.

    Raises (the request stays pending, its worker backs off and tries again) while something it needs is
    unavailable, and `LeaseLost` when another instance took the company over."""
    request = pending.request
    started = await attempts.start(request.request_id, lease)
    run = _Publication(request, records_for(request, lease), started, attempts, lease)
    try:
        outcome = Outcome(await run.perform(), reconciled=run.reconciled)
    except LeaseLost:
        raise
    except Exception as error:
        failure = classify(error)
        if failure is Failure.UNAVAILABLE:
            raise
        message = message_for(error)
        if failure is Failure.SERVER_ERROR:
            errors = await attempts.note_error(request.request_id, message, lease)
            if errors < max_tries:
                raise
            log.warning("request %s failed %d rounds (%s): failing its entry", request.request_id, errors, message)
        # a create may have landed unseen: the entry's next create looks for it first
        uncertain = isinstance(error, MaybeCreated) or failure is Failure.SERVER_ERROR
        outcome = Outcome(_failed(request, message), uncertain=uncertain, reconciled=run.reconciled)
    await attempts.finish(
        outcome.result, lease, trace_headers(), uncertain=outcome.uncertain, reconciled=outcome.reconciled
    )
    return outcome.result


@dataclass
class Outcome:
    result: ProcorePublishFinished
    uncertain: bool = False
    """A create failed without telling whether Procore made the record."""
    reconciled: bool = False
    """We listed the day's records looking for one of ours."""


def _finished(
    request: PublishToProcore,
    outcome: PublishOutcome,
    record: dict[str, Any] | None = None,
    message: str | None = None,
    payload: dict[str, Any] | None = None,
) -> ProcorePublishFinished:
    return ProcorePublishFinished(
        account_id=request.account_id,
        request_id=request.request_id,
        entry_id=request.entry_id,
        entry_version=request.entry_version,
        module=request.module,
        outcome=outcome,
        procore_id=int(record["id"]) if record else None,
        procore_updated_at=domain.parse_time(record.get("updated_at")) if record else None,
        published_payload=payload,
        message=message,
    )


def _failed(request: PublishToProcore, message: str) -> ProcorePublishFinished:
    return _finished(request, PublishOutcome.FAILED, message=message)


def _origin_taken(error: ProcoreError) -> bool:
    return error.status in (409, 422) and "origin_id" in f"{error.message} {error.body}"


class _Publication:
    """Make Procore hold the entry's content (or nothing), never a second record, never over someone's edit."""

    def __init__(
        self, request: PublishToProcore, records: ProcoreRecords, started: Started, attempts: Attempts, lease: Lease
    ) -> None:
        self.request = request
        self.records = records
        self.started = started
        self.attempts = attempts
        self.lease = lease
        self.reconciled = False

    async def perform(self) -> ProcorePublishFinished:
        r = self.request
        op = r.operation
        body: dict[str, Any] = {}
        if op is not ProcoreOperation.DELETE:
            body, problem = domain.prepare(r.module, r.payload, r.marker)
            if problem is not None:
                return _failed(r, problem)
        if op is ProcoreOperation.CREATE or r.procore_id is None:
            return self._published(await self._create(body), body)
        if r.force:
            return await self._force(r.procore_id, body)

        current = await self.records.get(r.procore_id)
        step, reason = domain.decide(
            op,
            current,
            resource=self.records.resource,
            published_updated_at=r.published_updated_at,
            published_payload=r.published_payload,
            payload=body,
            recovering=self.started.recovering,
            deleted_by_us=self.started.deleted_by_us,
        )
        if step is Step.CONFLICT:
            return _finished(r, PublishOutcome.CONFLICT, current, message=reason)
        if step is Step.ADOPT:
            assert current is not None
            return self._published(current, body)
        if step is Step.GONE:
            return _finished(r, PublishOutcome.DELETED, message="already deleted in Procore")
        if step is Step.CREATE:
            return self._published(await self._create(body), body)
        if op is ProcoreOperation.UPDATE:
            record = await self.records.update(r.procore_id, body)
            if record is None:  # deleted in Procore between our read and our write
                return _finished(r, PublishOutcome.CONFLICT, message=domain.DELETED_IN_PROCORE)
            return self._published(record, body)
        await self._delete(r.procore_id)
        if op is ProcoreOperation.DELETE:
            return _finished(r, PublishOutcome.DELETED)
        return self._published(await self._create(body), body)

    async def _force(self, procore_id: int, body: dict[str, Any]) -> ProcorePublishFinished:
        """Force publish: Procore gets MobiClocks' data whatever happened there; a deleted record is re-created."""
        op = self.request.operation
        if op is ProcoreOperation.UPDATE:
            record = await self.records.update(procore_id, body)
            return self._published(record if record is not None else await self._create(body), body)
        await self._delete(procore_id)
        if op is ProcoreOperation.DELETE:
            return _finished(self.request, PublishOutcome.DELETED)
        return self._published(await self._create(body), body)

    def _published(self, record: dict[str, Any], body: dict[str, Any]) -> ProcorePublishFinished:
        return _finished(self.request, PublishOutcome.PUBLISHED, record, payload=body)

    async def _delete(self, procore_id: int) -> None:
        await self.records.delete(procore_id)
        if self.request.operation is ProcoreOperation.REPLACE:
            await self.attempts.note_deleted(self.request.request_id, procore_id, self.lease)

    async def _find_own(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.reconciled = True
        listed = await self.records.list_day(self.request.work_date)
        return domain.find_own(self.records.resource, listed, self.request.marker, body)

    async def _adopt(self, found: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        log.info("adopting Procore record %s for entry %s", found.get("id"), self.request.entry_id)
        if domain.record_matches(self.records.resource, found, body):
            return found
        updated = await self.records.update(int(found["id"]), body)
        return updated if updated is not None else await self.records.create(body)

    async def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST once; after a crash or an answer that leaves it open, look for our record before posting again."""
        if self.started.recovering:
            found = await self._find_own(body)
            if found is not None:
                return await self._adopt(found, body)
        unknown = 0
        while True:
            try:
                return await self.records.create(body)
            except MaybeCreated as error:
                unknown += 1
                log.warning("create for entry %s may have landed (%s): looking for it", self.request.entry_id, error)
                found = await self._find_own(body)
                if found is not None:
                    return await self._adopt(found, body)
                if unknown >= self.records.max_attempts:
                    raise
                await asyncio.sleep(min(0.2 * 2**unknown, 10.0))
            except ProcoreError as error:
                if _origin_taken(error) and (found := await self._find_own(body)) is not None:
                    return await self._adopt(found, body)
                raise
