"""What every daily-log family shares: lookups, positions, the completed-day lock, create/update/delete and events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TypeVar

from sandbox.procore.rules import COMPLETED_DAY_MESSAGE
from sandbox.procore.state.base import StateBase
from sandbox.procore.state.errors import ProcoreError, invalid
from sandbox.procore.state.identity import Actor
from sandbox.procore.state.records import (
    RESOURCE_NAMES,
    AnyRecord,
    ChangeEvent,
    EventType,
    ManpowerLog,
    QuantityLog,
    RecordKind,
    TimecardEntry,
)
from sandbox.procore.state.reference import Company, Project

_R = TypeVar("_R", ManpowerLog, QuantityLog, TimecardEntry)


class RecordStore(StateBase):
    """Generic record handling; each family (`ManpowerLogs`, `QuantityLogs`, `TimecardEntries`) adds its field rules."""

    def record(self, kind: RecordKind, record_id: int, *, company_id: int, project_id: int | None) -> AnyRecord:
        rec = self.records[kind].get(record_id)
        if (
            rec is None
            or rec.deleted_at is not None
            or rec.company_id != company_id
            or (project_id is not None and rec.project_id != project_id)
        ):
            raise ProcoreError(404, f"{RESOURCE_NAMES[kind][:-1]} {record_id} not found", reason="not_found")
        return rec

    def shown_record(self, kind: RecordKind, record_id: int, *, company_id: int, project_id: int) -> AnyRecord:
        """A GET of one Daily Log record. A deleted one answers as the company's rule says: 404 (default), 403, or
        the record with its `deleted_at` (Procore does not document which)."""
        rec = self.records[kind].get(record_id)
        if (
            rec is not None
            and rec.deleted_at is not None
            and rec.company_id == company_id
            and rec.project_id == project_id
        ):
            answer = self.rules.company(company_id).deleted_answer
            if answer == "403":
                raise ProcoreError(403, "You do not have permission to view this record", reason="forbidden")
            if answer == "deleted_at":
                return rec
        return self.record(kind, record_id, company_id=company_id, project_id=project_id)

    def _emit(self, kind: RecordKind, event_type: EventType, rec: AnyRecord, actor: Actor) -> None:
        event = ChangeEvent(kind, event_type, rec.id, rec.company_id, rec.project_id, actor, rec.updated_at)
        for listener in self.listeners:
            listener(event)

    def _position(self, kind: RecordKind, project_id: int, day: date) -> int:
        return 1 + sum(1 for r in self.records[kind].values() if r.project_id == project_id and r.date == day)

    def _check_cost_code(self, project: Project, cost_code_id: int | None, name: str = "cost_code_id") -> None:
        if cost_code_id is not None and cost_code_id not in project.cost_codes:
            raise invalid(name, f"{cost_code_id} is not a cost code of project {project.id}")

    def _check_vendor(self, company: Company, vendor_id: int | None, name: str) -> None:
        if vendor_id is not None and vendor_id not in company.vendors:
            raise invalid(name, f"{vendor_id} is not a vendor of company {company.id}")

    def list_daily(
        self, kind: RecordKind, company_id: int, project_id: int, first: date, last: date
    ) -> list[AnyRecord]:
        self.project(company_id, project_id)
        found = [
            r
            for r in self.records[kind].values()
            if r.project_id == project_id and r.deleted_at is None and first <= r.date <= last
        ]
        return sorted(found, key=lambda r: (r.date, r.position, r.id))

    def check_day_open(self, rec: AnyRecord, actor: Actor) -> None:
        """A Daily Log marked Complete locks its day's records (rule; a control edit "as a human" is let through)."""
        if actor is self.procore_user:
            return
        if rec.date in self.rules.project(rec.project_id).completed_days:
            message = COMPLETED_DAY_MESSAGE.format(day=rec.date.isoformat())
            raise ProcoreError(422, message, reason="daily_log_completed", errors={"date": [message]})

    def delete_record(self, kind: RecordKind, rec: AnyRecord, actor: Actor) -> AnyRecord:
        self.check_day_open(rec, actor)
        moment = self.next_timestamp(rec.company_id)
        rec.deleted_at = moment
        rec.updated_at = moment
        self._emit(kind, "delete", rec, actor)
        return rec

    def _new_record(self, cls: type[_R], company_id: int, project_id: int, actor: Actor) -> _R:
        moment = self.next_timestamp(company_id)
        return cls(
            id=self.next_id(),
            company_id=company_id,
            project_id=project_id,
            date=self.today(),
            created_at=moment,
            updated_at=moment,
            created_by=actor,
        )

    def _store_new(self, kind: RecordKind, record: _R, actor: Actor) -> _R:
        self.check_day_open(record, actor)
        record.position = self._position(kind, record.project_id, record.date)
        self.records[kind][record.id] = record
        self._emit(kind, "create", record, actor)
        return record

    def _update_record(
        self,
        kind: RecordKind,
        cls: type[_R],
        company_id: int,
        project_id: int | None,
        record_id: int,
        apply: Callable[[_R, Project], None],
        actor: Actor,
    ) -> _R:
        """Validate the change on a copy, so a rejected update leaves the record as it was."""
        record = self.record(kind, record_id, company_id=company_id, project_id=project_id)
        assert isinstance(record, cls)
        draft = cls(**{**record.__dict__})
        self.check_day_open(record, actor)
        apply(draft, self.project(company_id, record.project_id))
        self.check_day_open(draft, actor)
        draft.updated_at = self.next_timestamp(company_id)
        record.__dict__.update(draft.__dict__)
        self._emit(kind, "update", record, actor)
        return record
