"""One request made true in Procore: Procore holds the entry's content (or nothing), never a second record, never
over someone's edit; and the `ProcorePublishFinished` results a request ends with."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.publisher import domain
from services.publisher.adapters.attempts import Started
from services.publisher.adapters.procore import MaybeCreated
from services.publisher.domain import Step
from services.publisher.lease import Lease
from services.publisher.ports import Attempts, Records
from shared.events import Module, ProcoreOperation, ProcorePublishFinished, PublishOutcome, PublishToProcore
from shared.procore import ProcoreError

log = logging.getLogger(__name__)


def finished(
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


def failed(request: PublishToProcore, message: str) -> ProcorePublishFinished:
    return finished(request, PublishOutcome.FAILED, message=message)


def project_of(record: dict[str, Any]) -> int | None:
    project = record.get("project")
    if isinstance(project, dict) and project.get("id") is not None:
        return int(project["id"])
    return int(record["project_id"]) if record.get("project_id") is not None else None


def _origin_taken(error: ProcoreError) -> bool:
    return error.status in (409, 422) and "origin_id" in f"{error.message} {error.body}"


class Publication:
    """Make Procore hold the entry's content (or nothing), never a second record, never over someone's edit."""

    def __init__(
        self,
        request: PublishToProcore,
        records: Records,
        started: Started,
        attempts: Attempts,
        lease: Lease,
        *,
        reconciled: bool = False,
    ) -> None:
        self.request = request
        self.records = records
        self.started = started
        self.attempts = attempts
        self.lease = lease
        self.reconciled = reconciled
        self.start_stop = (
            request.module is Module.TIMECARD and request.procore_project_id in records.start_stop_projects
        )
        """The project's timesheet takes start and stop times: the body carries the entry's clock times."""

    def refused_for_start_stop(self, error: ProcoreError) -> bool:
        """Procore refused our hours-only timecard: the project's timesheet takes start and stop times."""
        return (
            self.request.module is Module.TIMECARD
            and not self.start_stop
            and domain.wants_start_stop(error.status, error.body, {})
        )

    async def perform(self) -> ProcorePublishFinished:
        r = self.request
        op = r.operation
        body: dict[str, Any] = {}
        if op is not ProcoreOperation.DELETE:
            body, problem = domain.prepare(r.module, r.payload, r.marker)
            if problem is None and self.start_stop:
                body, problem = domain.with_clock_times(body, r.clock)
            if problem is not None:
                return failed(r, problem)
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
            return finished(r, PublishOutcome.CONFLICT, current, message=reason)
        if step is Step.ADOPT:
            assert current is not None
            return self._published(current, body)
        if step is Step.GONE:
            return finished(r, PublishOutcome.DELETED, message="already deleted in Procore")
        if step is Step.CREATE:
            return self._published(await self._create(body), body)
        if op is ProcoreOperation.UPDATE:
            record = await self.records.update(r.procore_id, body)
            if record is None:  # deleted in Procore between our read and our write
                return finished(r, PublishOutcome.CONFLICT, message=domain.DELETED_IN_PROCORE)
            return self._published(record, body)
        await self._delete(r.procore_id)
        if op is ProcoreOperation.DELETE:
            return finished(r, PublishOutcome.DELETED)
        return self._published(await self._create(body), body)

    async def _force(self, procore_id: int, body: dict[str, Any]) -> ProcorePublishFinished:
        """Force publish: Procore gets MobiClocks' data whatever happened there; a deleted record is re-created."""
        op = self.request.operation
        if op is ProcoreOperation.UPDATE:
            record = await self.records.update(procore_id, body)
            return self._published(record if record is not None else await self._create(body), body)
        await self._delete(procore_id)
        if op is ProcoreOperation.DELETE:
            return finished(self.request, PublishOutcome.DELETED)
        return self._published(await self._create(body), body)

    def _published(self, record: dict[str, Any], body: dict[str, Any]) -> ProcorePublishFinished:
        return finished(self.request, PublishOutcome.PUBLISHED, record, payload=body)

    async def _delete(self, procore_id: int) -> None:
        await self.records.delete(procore_id)
        if self.request.operation is ProcoreOperation.REPLACE:
            await self.attempts.note_deleted(self.request.request_id, procore_id, self.lease)

    async def _find_own(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.reconciled = True
        listed = await self.records.list_day(self.request.work_date)
        found = domain.find_own(self.records.resource, listed, self.request.marker, body)
        if found is None and self.request.module is Module.TIMECARD:
            # The project list may answer pending entries only: one approved in Procore meanwhile is in the
            # company's list (whatever its approval status), found by our origin_id / marker.
            everywhere = await self.records.list_company_timecards(self.request.work_date)
            here = [t for t in everywhere if project_of(t) in (None, self.records.project_id)]
            found = domain.find_own(self.records.resource, here, self.request.marker, body)
        return found

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
