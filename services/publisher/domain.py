"""Pure publishing decisions: where each module lives in Procore, what Procore can take,
whether a record may be overwritten, which listed record is the one we created, and when
this instance may still write for a company (its lease)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from shared.events import Module, ProcoreOperation
from shared.transient import Transient

CHANGED_IN_PROCORE = "changed in Procore since it was published"
DELETED_IN_PROCORE = "deleted in Procore since it was published"
MAX_TIMECARD_HOURS = Decimal(24)

Extract = Callable[[Mapping[str, Any]], Any]


def _field(name: str) -> Extract:
    return lambda record: record.get(name)


def _ref_id(*names: str) -> Extract:
    """The id of the first nested reference present (`vendor: {id, name}` answers `contact_id`)."""

    def extract(record: Mapping[str, Any]) -> Any:
        for name in names:
            ref = record.get(name)
            if isinstance(ref, Mapping) and ref.get("id") is not None:
                return ref["id"]
        return None

    return extract


@dataclass(frozen=True)
class Resource:
    """One module's Procore records: project-scoped Daily Log items, wrapped bodies, listed per day."""

    path: str
    wrapper: str
    answers: Mapping[str, Extract]
    """Each field we write → where Procore's answer shows it (used to compare content)."""
    marker_fields: tuple[str, ...]
    list_filters: Mapping[str, str] = field(default_factory=dict)

    def collection(self, project_id: int) -> str:
        return f"/rest/v1.0/projects/{project_id}/{self.path}"

    def item(self, project_id: int, record_id: int) -> str:
        return f"{self.collection(project_id)}/{record_id}"

    def body(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {self.wrapper: dict(payload)}

    def list_params(self, work_date: date) -> dict[str, Any]:
        """One day's records (Daily Log lists answer today's when no date is given)."""
        return {"log_date": work_date.isoformat(), **self.list_filters}


RESOURCES: dict[Module, Resource] = {
    Module.MANPOWER: Resource(
        path="manpower_logs",
        wrapper="manpower_log",
        answers={
            "date": _field("date"),
            "num_workers": _field("num_workers"),
            "num_hours": _field("num_hours"),
            "contact_id": _ref_id("vendor", "contact"),
            "notes": _field("notes"),
            "cost_code_id": _ref_id("cost_code"),
        },
        marker_fields=("notes",),
        list_filters={"filters[status]": "all"},  # pending logs too, not only approved ones
    ),
    Module.TIMECARD: Resource(
        path="timecard_entries",
        wrapper="timecard_entry",
        answers={
            "date": _field("date"),
            "hours": _field("hours"),
            "party_id": _ref_id("party"),
            "timecard_time_type_id": _ref_id("timecard_time_type"),
            "cost_code_id": _ref_id("cost_code"),
            "line_item_type_id": _field("line_item_type_id"),
            "origin_id": _field("origin_id"),
            "origin_data": _field("origin_data"),
            "description": _field("description"),
        },
        marker_fields=("origin_data", "description"),
    ),
    Module.PRODUCTION_QUANTITY: Resource(
        path="quantity_logs",
        wrapper="quantity_log",
        answers={
            "date": _field("date"),
            "quantity": _field("quantity"),
            "unit": _field("unit"),
            "cost_code_id": _ref_id("cost_code"),
            "vendor_id": _ref_id("vendor"),
            "description": _field("description"),
        },
        marker_fields=("description",),
    ),
}


# --- what Procore can take -------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _number_string(value: Decimal) -> str:
    return format(value, "f")


def prepare(module: Module, payload: Mapping[str, Any], marker: str) -> tuple[dict[str, Any], str | None]:
    """The body Procore gets for an entry, or why Procore cannot take it (never rounded to fit).

    Procore's quirks, handled here: `num_hours` (manpower) and `hours` (timecards) are strings;
    quantity-log `quantity` is an integer; a project timecard entry gets `hours` only (the
    hours time-entry mode): its `time_in`/`time_out`/`lunch_time` describe one worker's clock
    times, which an entry summed over several timelogs does not have, so we never invent them.
    Our `marker` is made sure to be in the record's text, so a lost record can be found again.
    """
    body = with_marker(RESOURCES[module], dict(payload), marker)
    if module is Module.MANPOWER:
        if "num_workers" in body:
            workers = body["num_workers"]
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
                return body, f"Procore needs a whole, non-negative number of workers; got {workers!r}"
        if "num_hours" in body:
            hours = _decimal(body["num_hours"])
            if hours is None or hours < 0:
                return body, f"Procore needs the hours per worker as a number; got {body['num_hours']!r}"
            body["num_hours"] = _number_string(hours)
    elif module is Module.TIMECARD:
        hours = _decimal(body.get("hours"))
        if hours is None or hours < 0:
            return body, f"Procore needs the timecard hours as a number; got {body.get('hours')!r}"
        if hours > MAX_TIMECARD_HOURS:
            return body, f"Procore takes at most 24 hours in one timecard entry; this entry has {hours} hours"
        body["hours"] = _number_string(hours)
        origin = body.get("origin_id")
        if origin is not None and (isinstance(origin, bool) or not isinstance(origin, int)):
            return body, f"Procore's timecard origin_id is an integer; got {origin!r}"
    elif "quantity" in body:
        quantity = _decimal(body["quantity"])
        if quantity is None or quantity < 0:
            return body, f"Procore needs the quantity as a number; got {body['quantity']!r}"
        if quantity != quantity.to_integral_value():
            unit = body.get("unit")
            return body, f"Procore takes whole quantities only; {quantity}{f' {unit}' if unit else ''} is fractional"
        body["quantity"] = int(quantity)
    return body, None


def with_marker(resource: Resource, body: dict[str, Any], marker: str) -> dict[str, Any]:
    name = resource.marker_fields[0]
    text = body.get(name)
    if not isinstance(text, str) or not text:
        body[name] = marker
    elif marker not in text:
        body[name] = f"{text} {marker}"
    return body


# --- comparing what is in Procore with what we wrote -----------------------------------


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _same(ours: Any, theirs: Any) -> bool:
    if ours in (None, "") and theirs in (None, ""):
        return True
    a, b = _decimal(ours), _decimal(theirs)
    if a is not None and b is not None:
        return a == b  # "8.0" (Procore) is our "8.00"
    return str(ours) == str(theirs)


def record_matches(resource: Resource, record: Mapping[str, Any], payload: Mapping[str, Any]) -> bool:
    """Whether Procore's record holds exactly the fields of `payload` we write."""
    for name, ours in payload.items():
        extract = resource.answers.get(name)
        if extract is not None and not _same(ours, extract(record)):
            return False
    return True


def changed_since_publish(
    resource: Resource,
    current: Mapping[str, Any],
    published_updated_at: datetime | None,
    published_payload: Mapping[str, Any] | None,
) -> bool:
    """Someone edited the record after our last publish: its `updated_at`, else its content, moved."""
    current_updated = parse_time(current.get("updated_at"))
    if published_updated_at is not None and current_updated is not None:
        return current_updated != published_updated_at
    if published_payload:
        return not record_matches(resource, current, published_payload)
    return False


def find_own(
    resource: Resource, records: list[dict[str, Any]], marker: str, payload: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The record an earlier, interrupted attempt created: our `origin_id`, else our marker in its text."""
    origin = payload.get("origin_id")
    if origin is not None:
        for record in records:
            if record.get("origin_id") is not None and str(record["origin_id"]) == str(origin):
                return record
    for record in records:
        for name in resource.marker_fields:
            value = record.get(name)
            if isinstance(value, str) and marker in value:
                return record
    return None


# --- what to do with the record we published before ------------------------------------


class Step(StrEnum):
    WRITE = "write"
    """PATCH it (update) or DELETE it (delete, replace)."""
    CONFLICT = "conflict"
    """Leave it: someone changed or deleted it in Procore."""
    ADOPT = "adopt"
    """Our own earlier, unrecorded PATCH is already there."""
    GONE = "gone"
    """Nothing to delete any more."""
    CREATE = "create"
    """Our own earlier replace already deleted the old record: create the new one."""


def decide(
    operation: ProcoreOperation,
    current: Mapping[str, Any] | None,
    *,
    resource: Resource,
    published_updated_at: datetime | None,
    published_payload: Mapping[str, Any] | None,
    payload: Mapping[str, Any],
    recovering: bool,
    deleted_by_us: bool = False,
) -> tuple[Step, str | None]:
    """Publish or Republish (not force) of an entry published before: never overwrite someone else's edit."""
    if current is None:
        if operation is ProcoreOperation.DELETE:
            return Step.GONE, None
        if deleted_by_us or (recovering and operation is ProcoreOperation.REPLACE):
            return Step.CREATE, None  # the first half of our own replace deleted it
        return Step.CONFLICT, DELETED_IN_PROCORE
    if recovering and operation is ProcoreOperation.UPDATE and record_matches(resource, current, payload):
        return Step.ADOPT, None
    if changed_since_publish(resource, current, published_updated_at, published_payload):
        return Step.CONFLICT, CHANGED_IN_PROCORE
    return Step.WRITE, None


# --- leases: one instance works a company at a time ------------------------------------


class LeaseLost(Exception):
    """Another instance took this company over (its fencing token moved on): stop working it, write nothing."""


class LeaseExpired(Transient):
    """This instance could not renew the company's lease in time: no Procore write until it has renewed it."""


@dataclass
class Lease:
    """A company this instance works, as this instance knows it.

    PostgreSQL decides who holds the lease (owner, expiry, fencing token). Locally the lease is
    good until `valid_until`: the start of the last successful renewal plus the TTL, minus a
    safety margin, on the monotonic clock. A process that was paused or cut off from the database
    finds that time passed when it wakes up, so it never writes to Procore on a lease that may
    already be someone else's.
    """

    company_id: int
    token: int
    valid_until: float
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    lost: bool = False
    handing_over: bool = False
    """Asked to go to another instance (fair share): finish the current request, then release."""

    def renewed(self, started_at: float, ttl_s: float, margin_s: float) -> None:
        self.valid_until = max(self.valid_until, started_at + ttl_s - margin_s)

    def check(self) -> None:
        """Raise unless this instance may write for the company right now."""
        if self.lost:
            raise LeaseLost(f"company {self.company_id}: lease {self.token} was taken over")
        if self.clock() >= self.valid_until:
            raise LeaseExpired(f"company {self.company_id}: lease {self.token} not renewed in time")


def fair_share(companies_with_work: int, live_instances: int) -> int:
    """How many companies one instance should hold so that the live instances split them evenly."""
    if companies_with_work <= 0:
        return 0
    return math.ceil(companies_with_work / max(live_instances, 1))


def backoff_s(failures: int, base_s: float, max_s: float) -> float:
    """Capped exponential wait before a company's worker tries again after `failures` failed rounds in a row."""
    if failures <= 0:
        return 0.0
    return min(base_s * 2 ** min(failures - 1, 30), max_s)
