"""Daily-log records (manpower logs, quantity logs, timecard entries), their change events and webhook hooks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from sandbox.procore.state.identity import Actor

RecordKind = Literal["manpower_logs", "quantity_logs", "timecard_entries"]
RECORD_KINDS: tuple[RecordKind, ...] = ("manpower_logs", "quantity_logs", "timecard_entries")
# Webhook resource names (Procore's display names for these tools).
RESOURCE_NAMES: dict[RecordKind, str] = {
    "manpower_logs": "Manpower Logs",
    "quantity_logs": "Quantity Logs",
    "timecard_entries": "Timecard Entries",
}
EventType = Literal["create", "update", "delete"]


@dataclass
class Record:
    id: int
    company_id: int
    project_id: int
    date: date
    created_at: datetime
    updated_at: datetime
    created_by: Actor
    deleted_at: datetime | None = None
    position: int = 0


@dataclass
class ManpowerLog(Record):
    datetime_: datetime | None = None
    num_workers: int = 0
    num_hours: Decimal = Decimal("0")
    notes: str | None = None
    contact_id: int | None = None
    user_id: int | None = None
    cost_code_id: int | None = None
    location_id: int | None = None
    trade_id: int | None = None
    status: str = "approved"


@dataclass
class QuantityLog(Record):
    description: str | None = None
    quantity: int | None = None
    unit: str | None = None
    cost_code_id: int | None = None
    vendor_id: int | None = None
    location_id: int | None = None
    daily_log_segment_id: int | None = None


@dataclass
class TimecardEntry(Record):
    hours: Decimal = Decimal("0")
    time_in: datetime | None = None
    time_out: datetime | None = None
    lunch_time: int | None = None
    party_id: int | None = None
    timecard_time_type_id: int | None = None
    cost_code_id: int | None = None
    line_item_type_id: int | None = None
    sub_job_id: int | None = None
    location_id: int | None = None
    timesheet_id: int | None = None
    crew_id: int | None = None
    daily_log_segment_id: int | None = None
    billable: bool = False
    description: str | None = None
    origin_id: int | None = None
    origin_data: str | None = None
    approval_status: str = "pending"


AnyRecord = ManpowerLog | QuantityLog | TimecardEntry


@dataclass(frozen=True)
class ChangeEvent:
    kind: RecordKind
    event_type: EventType
    record_id: int
    company_id: int
    project_id: int
    actor: Actor
    timestamp: datetime


@dataclass
class Hook:
    id: int
    company_id: int | None
    project_id: int | None
    api_version: str
    namespace: str | None
    destination_url: str
    destination_headers: dict[str, str]
    owned_by_user_id: int


@dataclass
class Trigger:
    id: int
    hook_id: int
    resource_name: str
    event_type: str
    company_id: int | None
    project_id: int | None
    user_id: int
