"""Timecard entries (project and company families): field rules, time-entry mode, directory, unique origin ids."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from sandbox.procore.rules import NOT_IN_DIRECTORY, START_STOP_REQUIRED
from sandbox.procore.state.errors import ProcoreError, invalid
from sandbox.procore.state.identity import Actor
from sandbox.procore.state.record_store import RecordStore
from sandbox.procore.state.records import TimecardEntry
from sandbox.procore.state.reference import Project
from sandbox.procore.state.values import parse_bool, parse_date, parse_datetime, parse_decimal, parse_opt_int, parse_str

if TYPE_CHECKING:
    from sandbox.procore.state.sandbox import SandboxState

APPROVAL_STATUSES = ("pending", "reviewed", "approved", "completed")


class TimecardEntries(RecordStore):
    def create_timecard_entry(
        self, company_id: int, project_id: int, fields: dict[str, Any], actor: Actor, *, require_date: bool
    ) -> TimecardEntry:
        project = self.project(company_id, project_id)
        if require_date and fields.get("date") in (None, ""):
            raise invalid("date", "is required")
        entry = self._new_record(TimecardEntry, company_id, project_id, actor)
        self._apply_timecard(entry, project, fields)
        if entry.party_id is None:
            raise invalid("party_id", "is required (the worker this timecard belongs to)")
        if "hours" not in fields and entry.time_in is None:
            raise invalid("hours", "is required unless time_in and time_out are given")
        self._check_time_entry_mode(project, fields)
        return self._store_new("timecard_entries", entry, actor)

    def _check_time_entry_mode(self, project: Project, fields: dict[str, Any]) -> None:
        """Rule: a start/stop project's timecards take time_in + time_out; hours alone are refused."""
        if self.rules.project(project.id).time_entry_mode != "start_stop":
            return
        missing = [name for name in ("time_in", "time_out") if fields.get(name) in (None, "")]
        if missing:
            raise ProcoreError(
                422,
                f"{missing[0]} {START_STOP_REQUIRED}",
                errors={name: [START_STOP_REQUIRED] for name in missing},
            )

    def update_timecard_entry(
        self, company_id: int, project_id: int | None, entry_id: int, fields: dict[str, Any], actor: Actor
    ) -> TimecardEntry:
        def apply(draft: TimecardEntry, project: Project) -> None:
            self._apply_timecard(draft, project, fields)
            if actor is not self.procore_user and "hours" in fields:
                self._check_time_entry_mode(project, fields)

        return self._update_record("timecard_entries", TimecardEntry, company_id, project_id, entry_id, apply, actor)

    def _apply_timecard(self, entry: TimecardEntry, project: Project, f: dict[str, Any]) -> None:  # noqa: C901 - one check per field and rule (time-entry mode, directory, completed day), in Procore's order
        company = self.companies[project.company_id]
        if "date" in f and f["date"] is not None:
            entry.date = parse_date(f["date"], "date")
        if "datetime" in f and f["datetime"] is not None:
            entry.date = parse_datetime(f["datetime"], "datetime").date()
        if "lunch_time" in f:
            entry.lunch_time = parse_opt_int(f["lunch_time"], "lunch_time")
        for key in ("time_in", "time_out"):
            if key in f:
                value = None if f[key] in (None, "") else parse_datetime(f[key], key, entry.date)
                setattr(entry, key, value)
        if (entry.time_in is None) != (entry.time_out is None):
            raise invalid("time_out" if entry.time_out is None else "time_in", "is required with the other")
        if entry.time_in is not None and entry.time_out is not None:
            if entry.time_out <= entry.time_in:
                raise invalid("time_out", "must be after time_in")
            if "hours" not in f and ({"time_in", "time_out", "lunch_time"} & f.keys()):
                worked = (entry.time_out - entry.time_in).total_seconds() / 60 - (entry.lunch_time or 0)
                entry.hours = (Decimal(worked) / Decimal(60)).quantize(Decimal("0.01"))
        if "hours" in f:
            entry.hours = parse_decimal(f["hours"], "hours") if f["hours"] is not None else Decimal(0)
            if entry.hours < 0 or entry.hours > 24:
                raise invalid("hours", "must be between 0 and 24")
        if "party_id" in f:
            entry.party_id = parse_opt_int(f["party_id"], "party_id")
            if entry.party_id is not None and entry.party_id not in company.people:
                raise invalid("party_id", f"{entry.party_id} is not a person of company {company.id}")
            directory = self._directory(project)
            if entry.party_id is not None and directory is not None and entry.party_id not in directory:
                raise invalid("party_id", NOT_IN_DIRECTORY.format(party_id=entry.party_id, project_id=project.id))
        if "timecard_time_type_id" in f:
            entry.timecard_time_type_id = parse_opt_int(f["timecard_time_type_id"], "timecard_time_type_id")
            if entry.timecard_time_type_id is not None and entry.timecard_time_type_id not in company.time_types:
                raise invalid(
                    "timecard_time_type_id",
                    f"{entry.timecard_time_type_id} is not a timecard time type of company {company.id}",
                )
        if "cost_code_id" in f:
            entry.cost_code_id = parse_opt_int(f["cost_code_id"], "cost_code_id")
            self._check_cost_code(project, entry.cost_code_id)
        if "line_item_type_id" in f:
            entry.line_item_type_id = parse_opt_int(f["line_item_type_id"], "line_item_type_id")
        if entry.line_item_type_id is not None:
            code = project.cost_codes.get(entry.cost_code_id) if entry.cost_code_id else None
            if code is None or all(lit.id != entry.line_item_type_id for lit in code.line_item_types):
                raise invalid(
                    "line_item_type_id",
                    f"{entry.line_item_type_id} is not a line item type of cost code {entry.cost_code_id}",
                )
        for key in ("sub_job_id", "location_id", "timesheet_id", "crew_id", "daily_log_segment_id"):
            if key in f:
                setattr(entry, key, parse_opt_int(f[key], key))
        if "billable" in f and f["billable"] is not None:
            entry.billable = parse_bool(f["billable"], "billable")
        if "description" in f:
            entry.description = parse_str(f["description"], "description")
        if "origin_data" in f:
            entry.origin_data = parse_str(f["origin_data"], "origin_data")
        if "approval_status" in f and f["approval_status"] is not None:
            status = parse_str(f["approval_status"], "approval_status")
            if status not in APPROVAL_STATUSES:
                raise invalid("approval_status", f"must be one of {', '.join(APPROVAL_STATUSES)}")
            entry.approval_status = status
        if "origin_id" in f:
            entry.origin_id = parse_opt_int(f["origin_id"], "origin_id")
            self._check_origin_unique(entry)

    def _directory(self, project: Project) -> set[int] | None:
        """Who a timecard of this project may name (rule): the rule's own list, else — with `enforce_directory` — the
        project's directory as `project_directory.py` serves it (every company person until one is set)."""
        rules = self.rules.project(project.id)
        if rules.directory is not None or not rules.enforce_directory:
            return rules.directory
        from sandbox.procore.project_directory import directories  # it builds on this module

        return directories(cast("SandboxState", self)).get(project.id)  # the mixin is only ever a SandboxState

    def _check_origin_unique(self, entry: TimecardEntry) -> None:
        if entry.origin_id is None:
            return
        for other in self.records["timecard_entries"].values():
            if (
                isinstance(other, TimecardEntry)
                and other.id != entry.id
                and other.company_id == entry.company_id
                and other.deleted_at is None
                and other.origin_id == entry.origin_id
            ):
                raise ProcoreError(
                    self.settings.duplicate_origin_status,
                    f"origin_id {entry.origin_id} has already been taken",
                    errors={"origin_id": ["has already been taken"]},
                )

    def list_company_timecards(
        self,
        company_id: int,
        *,
        updated: tuple[datetime, datetime] | None,
        deleted: tuple[datetime, datetime] | None,
        ids: set[int],
        party_ids: set[int],
        first: date | None,
        last: date | None,
    ) -> list[TimecardEntry]:
        out: list[TimecardEntry] = []
        for rec in self.records["timecard_entries"].values():
            if not isinstance(rec, TimecardEntry) or rec.company_id != company_id:
                continue
            if deleted is not None:
                if rec.deleted_at is None or not deleted[0] <= rec.deleted_at <= deleted[1]:
                    continue
            elif rec.deleted_at is not None:
                continue
            if updated is not None and not updated[0] <= rec.updated_at <= updated[1]:
                continue
            if ids and rec.id not in ids:
                continue
            if party_ids and rec.party_id not in party_ids:
                continue
            if first is not None and rec.date < first:
                continue
            if last is not None and rec.date > last:
                continue
            out.append(rec)
        return sorted(out, key=lambda r: (r.date, r.id))
