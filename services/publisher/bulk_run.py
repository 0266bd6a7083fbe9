"""A run of timecard creates sent to Procore with one `bulk_create` call: starting them, and adopting what an
earlier try left in Procore."""

from __future__ import annotations

import logging
from typing import Any

from services.publisher import domain
from services.publisher.adapters.attempts import Pending
from services.publisher.lease import Lease
from services.publisher.ports import Attempts, Records
from services.publisher.publication import failed, finished, project_of
from shared.events import ProcorePublishFinished, PublishOutcome
from shared.outbox import trace_headers

log = logging.getLogger(__name__)


class BulkRun:
    """One run of timecard creates sent together: their bodies, look-ups and results."""

    def __init__(self, group: list[Pending], lease: Lease, attempts: Attempts, records: Records) -> None:
        self.group = group
        self.lease = lease
        self.attempts = attempts
        self.records = records
        self.recovering = False
        self.reconciled = False
        self.results: list[ProcorePublishFinished] = []

    async def finish(self, pending: Pending, result: ProcorePublishFinished) -> None:
        await self.attempts.finish(result, self.lease, pending.trace or trace_headers(), reconciled=self.reconciled)
        self.results.append(result)

    async def prepare(self) -> list[tuple[Pending, dict[str, Any]]]:
        """Start each request; the bodies Procore gets (what it cannot take fails here, with no call)."""
        todo: list[tuple[Pending, dict[str, Any]]] = []
        start_stop = self.records.project_id in self.records.start_stop_projects
        for pending in self.group:
            r = pending.request
            started = await self.attempts.start(r.request_id, self.lease)
            self.recovering |= started.recovering
            body, problem = domain.prepare(r.module, r.payload, r.marker)
            if problem is None and start_stop:
                body, problem = domain.with_clock_times(body, r.clock)
            if problem is not None:
                await self.finish(pending, failed(r, problem))
                continue
            todo.append((pending, body))
        return todo

    async def adopt_listed(self, todo: list[tuple[Pending, dict[str, Any]]]) -> list[tuple[Pending, dict[str, Any]]]:
        """Look once for records earlier tries left (the project's list, then the company's: every approval status);
        adopt each found, return the requests that have none."""
        self.reconciled = True
        days = [p.request.work_date for p, _ in todo]
        resource = self.records.resource
        listed = await self.records.list_span(min(days), max(days))
        everywhere: list[dict[str, Any]] | None = None
        rest = []
        for pending, body in todo:
            found = domain.find_own(resource, listed, pending.request.marker, body)
            if found is None:
                if everywhere is None:
                    company = await self.records.list_company_timecards_span(min(days), max(days))
                    everywhere = [t for t in company if project_of(t) in (None, self.records.project_id)]
                found = domain.find_own(resource, everywhere, pending.request.marker, body)
            if found is None:
                rest.append((pending, body))
                continue
            log.info("adopting Procore record %s for entry %s", found.get("id"), pending.request.entry_id)
            record = found
            if not domain.record_matches(resource, found, body):
                record = await self.records.update(int(found["id"]), body) or await self.records.create(body)
            await self.finish(pending, finished(pending.request, PublishOutcome.PUBLISHED, record, payload=body))
        return rest
