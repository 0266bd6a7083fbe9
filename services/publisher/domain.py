"""Pure publishing decisions: Procore resources per module, conflicts, adopting lost records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.events import Module

CHANGED_IN_PROCORE = "changed in Procore since it was published"
DELETED_IN_PROCORE = "deleted in Procore since it was published"


@dataclass(frozen=True)
class Resource:
    """Where one module's records live in Procore and how their bodies are wrapped."""

    wrapper: str
    marker_field: str

    def collection(self, company_id: int, project_id: int) -> str:
        raise NotImplementedError

    def item(self, company_id: int, project_id: int, record_id: int) -> str:
        return f"{self.collection(company_id, project_id)}/{record_id}"

    def body(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        return {self.wrapper: payload}

    def list_params(self, work_date: str) -> dict[str, Any]:
        return {"log_date": work_date}


@dataclass(frozen=True)
class DailyLogResource(Resource):
    path: str = ""

    def collection(self, company_id: int, project_id: int) -> str:
        return f"/rest/v1.0/projects/{project_id}/{self.path}"

    def list_params(self, work_date: str) -> dict[str, Any]:
        params: dict[str, Any] = {"log_date": work_date}
        if self.path == "manpower_logs":
            params["filters[status]"] = "all"
        return params


@dataclass(frozen=True)
class CompanyTimecardResource(Resource):
    """Company timecard entries: `origin_id`, `filters[updated_at]` and only project_id + date required."""

    def collection(self, company_id: int, project_id: int) -> str:
        return f"/rest/v1.0/companies/{company_id}/timecard_entries"

    def body(self, project_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        return {"project_id": project_id, self.wrapper: payload}

    def list_params(self, work_date: str) -> dict[str, Any]:
        return {"start_date": work_date, "end_date": work_date}


RESOURCES: dict[Module, Resource] = {
    Module.MANPOWER: DailyLogResource(wrapper="manpower_log", marker_field="notes", path="manpower_logs"),
    Module.TIMECARD: CompanyTimecardResource(wrapper="timecard_entry", marker_field="origin_data"),
    Module.PRODUCTION_QUANTITY: DailyLogResource(
        wrapper="quantity_log", marker_field="description", path="quantity_logs"
    ),
}


class Verdict(StrEnum):
    PROCEED = "proceed"
    CONFLICT = "conflict"
    RECREATE = "recreate"
    ALREADY_GONE = "already_gone"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def judge_existing(
    current: dict[str, Any] | None,
    published_updated_at: datetime | None,
    force: bool,
    deleting: bool,
) -> tuple[Verdict, str | None]:
    """May we overwrite (or delete) Procore's current record? Never without force if someone edited it."""
    if current is None:
        if deleting:
            return Verdict.ALREADY_GONE, None
        return (Verdict.RECREATE, None) if force else (Verdict.CONFLICT, DELETED_IN_PROCORE)
    if force:
        return Verdict.PROCEED, None
    current_updated = parse_time(current.get("updated_at"))
    if published_updated_at is not None and current_updated is not None and current_updated != published_updated_at:
        return Verdict.CONFLICT, CHANGED_IN_PROCORE
    return Verdict.PROCEED, None


def find_marked(records: list[dict[str, Any]], field: str, marker: str) -> dict[str, Any] | None:
    """The record our earlier, interrupted attempt created, recognised by our marker."""
    for record in records:
        value = record.get(field)
        if isinstance(value, str) and marker in value:
            return record
    return None
