"""Pure publishing decisions: where each module lives in Procore, what Procore can take,
whether a record may be overwritten, which listed record is the one we created, and how
timecard creates are grouped into bulk calls. (The lease rules are in `lease.py`.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from shared import labels
from shared.events import Module, ProcoreOperation, PublishToProcore, TimecardClock
from shared.procore import records as procore_records
from shared.procore.records import RECORD_PATHS

CHANGED_IN_PROCORE = labels.CHANGED_IN_PROCORE
DELETED_IN_PROCORE = labels.DELETED_IN_PROCORE
MAX_TIMECARD_HOURS = Decimal(24)

Extract = procore_records.Extract
parse_time = procore_records.parse_time


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
        path=RECORD_PATHS[Module.MANPOWER],
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
        path=RECORD_PATHS[Module.TIMECARD],
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
        path=RECORD_PATHS[Module.PRODUCTION_QUANTITY],
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


# --- Procore's stricter rules: time-entry mode, completed days, project directory -------

DURATIONS_ONLY = (
    "This Procore project's timesheet takes start and stop times, but the timelogs of this entry have durations only"
    " (no clock-in and clock-out), and MobiClocks never invents times. Record the timelogs with clock times, or set"
    " the project's time entry to hours in Procore, then republish"
)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def with_clock_times(body: Mapping[str, Any], clock: TimecardClock | None) -> tuple[dict[str, Any], str | None]:
    """A timecard body for a project whose timesheet takes start and stop times: `time_in` = the first clock-in,
    `time_out` = the last clock-out, `lunch_time` = the gaps between the timelogs (minutes, a string as Procore's
    project family takes it). Without clock times (durations only) the entry cannot go: the reason says so."""
    if clock is None or clock.durations_only or clock.first_in is None or clock.last_out is None:
        return dict(body), DURATIONS_ONLY
    return {
        **body,
        "time_in": _iso(clock.first_in),
        "time_out": _iso(clock.last_out),
        "lunch_time": str(clock.lunch_minutes),
    }, None


def wants_start_stop(status: int, body: Any, sent: Mapping[str, Any]) -> bool:
    """Procore refused an hours-only timecard because the project's timesheet takes start and stop times (a 422 on
    `time_in`/`time_out` for a body that had none)."""
    if status != 422 or "time_in" in sent:
        return False
    errors = body.get("errors") if isinstance(body, Mapping) else None
    return isinstance(errors, Mapping) and bool({"time_in", "time_out"} & set(errors))


def _error_text(message: str, body: Any) -> str:
    parts = [message]
    if isinstance(body, Mapping):
        parts += [str(body.get("message") or ""), str(body.get("reason") or "")]
        errors = body.get("errors")
        if isinstance(errors, Mapping):
            parts += [f"{name} {problem}" for name, problems in errors.items() for problem in _listed(problems)]
    return " ".join(parts).lower()


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def refusal_reason(request: PublishToProcore, status: int, message: str, body: Any) -> str | None:
    """Procore's refusals that have a precise reason of their own (its exact answers are not documented, so the
    words are matched loosely): a completed day, a person outside the project's directory."""
    if status not in (400, 403, 409, 422):
        return None
    text = _error_text(message, body)
    if "complete" in text and ("daily log" in text or "daily_log" in text):
        return (
            f"Procore's daily log for {request.work_date.isoformat()} is completed — reopen it in Procore, then"
            " republish"
        )
    if "directory" in text and ("party" in text or "person" in text or "user" in text):
        party = request.payload.get("party_id")
        person = request.person_name or (f"Procore person {party}" if party is not None else "The person")
        project = f"Procore project {request.project_name or request.procore_project_id}"
        return (
            f"{person} is not in the directory of {project} — add them to the project's directory in Procore,"
            " then republish"
        )
    return None


# --- comparing what is in Procore with what we wrote -----------------------------------


def record_matches(resource: Resource, record: Mapping[str, Any], payload: Mapping[str, Any]) -> bool:
    """Whether Procore's record holds exactly the fields of `payload` we write."""
    return procore_records.fields_match(record, payload, resource.answers)


def changed_since_publish(
    resource: Resource,
    current: Mapping[str, Any],
    published_updated_at: datetime | None,
    published_payload: Mapping[str, Any] | None,
) -> bool:
    """Someone edited the record after our last publish (the shared rule, reading fields where Procore answers
    them)."""
    return procore_records.changed_since_published(current, published_updated_at, published_payload, resource.answers)


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


# --- bulk creates (v1.1 project timecard bulk_create) ----------------------------------

MAX_BULK = 25
"""Procore's cap on one timecard `bulk_create` call."""


def bulkable(request: PublishToProcore) -> bool:
    """A plain timecard create (a first publish): these may go to Procore 25 at a time."""
    return (
        request.module is Module.TIMECARD
        and request.operation is ProcoreOperation.CREATE
        and request.procore_id is None
        and not request.force
        and request.payload.get("origin_id") is not None  # how each created record is matched to its request
    )


def bulk_groups(
    requests: list[PublishToProcore], max_size: int = MAX_BULK, *, hold_partial: bool = False
) -> list[list[int]]:
    """Split a company's pending requests (in arrival order) into runs sent together (indexes into `requests`), in
    the order they are worked.

    A run holds bulkable creates of one project, at most `max_size`; it is worked where its first request arrived,
    so a later member goes ahead of requests of *other* entries in between (they do not depend on each other). Each
    entry's own requests keep their order: a create of an entry with an earlier request in the batch runs alone,
    in its place. Everything else is a run of its own.

    `hold_partial` (more requests are pending than were read): a bulk run not yet full is held back, with every later
    request of its entries, so that the next read fills it (25 timecards per call in a mixed backlog) — unless that
    leaves nothing to work."""
    groups: list[list[int]] = []
    open_run: dict[int, int] = {}
    seen: set[Any] = set()
    for index, request in enumerate(requests):
        if bulkable(request) and request.entry_id not in seen:
            at = open_run.get(request.procore_project_id)
            if at is not None and len(groups[at]) < max_size:
                groups[at].append(index)
            else:
                open_run[request.procore_project_id] = len(groups)
                groups.append([index])
        else:
            groups.append([index])
        seen.add(request.entry_id)
    if not hold_partial:
        return groups
    held: set[Any] = set()
    now: list[list[int]] = []
    for group in groups:
        entries = {requests[i].entry_id for i in group}
        partial_run = bulkable(requests[group[0]]) and len(group) < max_size
        if partial_run or entries & held:
            held |= entries
        else:
            now.append(group)
    return now or groups


def bulk_item(body: Mapping[str, Any], project_id: int) -> dict[str, Any]:
    """One `bulk_create` item: the flat v1.1 field set, `project_id` in it and `origin_id` as a string."""
    item = {"project_id": project_id, **body}
    if item.get("origin_id") is not None:
        item["origin_id"] = str(item["origin_id"])
    return item
