"""Manpower logs: creating and updating them with the field rules Procore applies."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox.procore.state.errors import invalid, require_wrapper
from sandbox.procore.state.identity import Actor
from sandbox.procore.state.record_store import RecordStore
from sandbox.procore.state.records import ManpowerLog
from sandbox.procore.state.reference import Project
from sandbox.procore.state.values import parse_date, parse_datetime, parse_decimal, parse_int, parse_opt_int, parse_str

MANPOWER_STATUSES = ("pending", "approved")


class ManpowerLogs(RecordStore):
    def create_manpower_log(self, company_id: int, project_id: int, body: Any, actor: Actor) -> ManpowerLog:
        project = self.project(company_id, project_id)
        fields = require_wrapper(body, "manpower_log")
        log = self._new_record(ManpowerLog, company_id, project_id, actor)
        self._apply_manpower(log, project, fields, creating=True)
        return self._store_new("manpower_logs", log, actor)

    def update_manpower_log(
        self, company_id: int, project_id: int | None, log_id: int, fields: dict[str, Any], actor: Actor
    ) -> ManpowerLog:
        def apply(draft: ManpowerLog, project: Project) -> None:
            self._apply_manpower(draft, project, fields, creating=False)

        return self._update_record("manpower_logs", ManpowerLog, company_id, project_id, log_id, apply, actor)

    def _apply_manpower(self, log: ManpowerLog, project: Project, f: dict[str, Any], *, creating: bool) -> None:  # noqa: C901 - one check per field, in the order Procore validates them
        company = self.companies[project.company_id]
        if f.get("date") is not None and f.get("datetime") is not None:
            raise invalid("datetime", "cannot be combined with date")
        if "date" in f and f["date"] is not None:
            log.date = parse_date(f["date"], "date")
            log.datetime_ = None
        if "datetime" in f and f["datetime"] is not None:
            log.datetime_ = parse_datetime(f["datetime"], "datetime")
            log.date = log.datetime_.date()
        if "num_workers" in f:
            log.num_workers = parse_int(f["num_workers"], "num_workers") if f["num_workers"] is not None else 0
            if log.num_workers < 0:
                raise invalid("num_workers", "must be greater than or equal to 0")
        if "num_hours" in f:
            log.num_hours = parse_decimal(f["num_hours"], "num_hours") if f["num_hours"] is not None else Decimal(0)
            if log.num_hours < 0:
                raise invalid("num_hours", "must be greater than or equal to 0")
        if "notes" in f:
            log.notes = parse_str(f["notes"], "notes")
        if "contact_id" in f:
            log.contact_id = parse_opt_int(f["contact_id"], "contact_id")
            self._check_vendor(company, log.contact_id, "contact_id")
        if "user_id" in f:
            log.user_id = parse_opt_int(f["user_id"], "user_id")
            if log.user_id is not None and not any(
                p.user_id == log.user_id or p.id == log.user_id for p in company.people.values()
            ):
                raise invalid("user_id", f"{log.user_id} is not a user of company {company.id}")
        if "cost_code_id" in f:
            log.cost_code_id = parse_opt_int(f["cost_code_id"], "cost_code_id")
            self._check_cost_code(project, log.cost_code_id)
        if "location_id" in f:
            log.location_id = parse_opt_int(f["location_id"], "location_id")
        if "trade_id" in f:
            log.trade_id = parse_opt_int(f["trade_id"], "trade_id")
        if "status" in f and f["status"] is not None:
            status = parse_str(f["status"], "status")
            if status not in MANPOWER_STATUSES:
                raise invalid("status", f"must be one of {', '.join(MANPOWER_STATUSES)}")
            log.status = status
