"""Quantity logs: creating and updating them with the field rules Procore applies."""

from __future__ import annotations

from typing import Any

from sandbox.procore.state.errors import invalid, require_wrapper
from sandbox.procore.state.identity import Actor
from sandbox.procore.state.record_store import RecordStore
from sandbox.procore.state.records import QuantityLog
from sandbox.procore.state.reference import Project
from sandbox.procore.state.values import INT_RE, parse_date, parse_opt_int, parse_str


class QuantityLogs(RecordStore):
    def create_quantity_log(self, company_id: int, project_id: int, body: Any, actor: Actor) -> QuantityLog:
        project = self.project(company_id, project_id)
        fields = require_wrapper(body, "quantity_log")
        log = self._new_record(QuantityLog, company_id, project_id, actor)
        self._apply_quantity(log, project, fields)
        return self._store_new("quantity_logs", log, actor)

    def update_quantity_log(
        self, company_id: int, project_id: int | None, log_id: int, fields: dict[str, Any], actor: Actor
    ) -> QuantityLog:
        def apply(draft: QuantityLog, project: Project) -> None:
            self._apply_quantity(draft, project, fields)

        return self._update_record("quantity_logs", QuantityLog, company_id, project_id, log_id, apply, actor)

    def _apply_quantity(self, log: QuantityLog, project: Project, f: dict[str, Any]) -> None:
        company = self.companies[project.company_id]
        if "date" in f and f["date"] is not None:
            log.date = parse_date(f["date"], "date")
        if "description" in f:
            log.description = parse_str(f["description"], "description")
        if "quantity" in f:
            value = f["quantity"]
            if isinstance(value, float) or (isinstance(value, str) and not INT_RE.match(value.strip())):
                raise invalid("quantity", f"must be an integer, got {value!r}")
            log.quantity = parse_opt_int(value, "quantity")
        if "unit" in f:
            log.unit = parse_str(f["unit"], "unit")
        if "cost_code_id" in f:
            log.cost_code_id = parse_opt_int(f["cost_code_id"], "cost_code_id")
            self._check_cost_code(project, log.cost_code_id)
        if "vendor_id" in f:
            log.vendor_id = parse_opt_int(f["vendor_id"], "vendor_id")
            self._check_vendor(company, log.vendor_id, "vendor_id")
        if "location_id" in f:
            log.location_id = parse_opt_int(f["location_id"], "location_id")
        if "daily_log_segment_id" in f:
            log.daily_log_segment_id = parse_opt_int(f["daily_log_segment_id"], "daily_log_segment_id")
