"""Pure aggregation, entry status rules, validation and Procore payloads. No I/O here.

- `aggregate` turns the current timelogs of some (job site, day) groups into entries of the
  enabled modules; the result must equal a from-scratch recompute, whatever the event order.
- `EntryState` + the transition functions are the status machine of DESIGN.md.
- `validate` names each missing mapping; `procore_payload` builds the Procore record.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Protocol

from shared.events import (
    Module,
    ProcoreEntity,
    ProcoreOperation,
    PublishAction,
    PublishOutcome,
    ReferenceKind,
)

ENTRY_NAMESPACE = uuid.UUID("7f1c1f3e-5a55-4d0c-9a3e-2b8e6c1d0a11")
HUNDREDTH = Decimal("0.01")


class Status(StrEnum):
    TODO = "todo"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    UPDATED = "updated"
    FAILED = "failed"
    DELETED = "deleted"
    NON_PUBLISHABLE = "non_publishable"


# --- aggregation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Timelog:
    timelog_id: str
    employee_id: str
    company_id: str
    crew_tag: str | None
    job_site_id: str
    work_date: date
    seconds: int
    cost_code_id: str | None
    pay_class_id: str | None
    pay_id: str
    quantities: tuple[tuple[str, str, Decimal], ...] = ()


MODULE_DIMS: dict[Module, tuple[str, ...]] = {
    Module.MANPOWER: ("company_id", "crew_tag"),
    Module.TIMECARD: ("employee_id", "pay_id", "cost_code_id", "pay_class_id"),
    Module.PRODUCTION_QUANTITY: ("cost_code_id", "unit_of_measure"),
}


@dataclass(frozen=True)
class Aggregate:
    module: Module
    job_site_id: str
    work_date: date
    dims: tuple[tuple[str, str | None], ...]
    content: tuple[tuple[str, str], ...]
    timelog_ids: frozenset[str]

    @property
    def entry_key(self) -> str:
        return entry_key(self.module, self.job_site_id, self.work_date, dict(self.dims))

    @property
    def fingerprint(self) -> str:
        return fingerprint(dict(self.content))


def entry_key(module: Module, job_site_id: str, work_date: date, dims: Mapping[str, str | None]) -> str:
    parts = [job_site_id, work_date.isoformat(), *(dims.get(d) for d in MODULE_DIMS[module])]
    return json.dumps(parts, separators=(",", ":"))


def entry_id(account_id: str, module: Module, key: str) -> uuid.UUID:
    """Deterministic, so a rebuild from the stored timelogs yields the very same entries."""
    return uuid.uuid5(ENTRY_NAMESPACE, f"{account_id}\x1f{module.value}\x1f{key}")


def fingerprint(content: Mapping[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def hours(seconds: int) -> Decimal:
    return (Decimal(seconds) / Decimal(3600)).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)


def _units(value: Decimal) -> str:
    normalized = value.normalize()
    return format(normalized, "f")


def aggregate(timelogs: Iterable[Timelog], modules: Iterable[Module]) -> dict[tuple[Module, str], Aggregate]:
    """Entries of the enabled modules for exactly the given (current, non-deleted) timelogs."""
    enabled = set(modules)
    manpower: dict[tuple[str, date, str, str | None], list[Timelog]] = defaultdict(list)
    timecard: dict[tuple[str, date, str, str, str | None, str | None], list[Timelog]] = defaultdict(list)
    quantity: dict[tuple[str, date, str, str], list[tuple[Timelog, Decimal]]] = defaultdict(list)
    for t in timelogs:
        if Module.MANPOWER in enabled:
            manpower[(t.job_site_id, t.work_date, t.company_id, t.crew_tag)].append(t)
        if Module.TIMECARD in enabled:
            timecard[(t.job_site_id, t.work_date, t.employee_id, t.pay_id, t.cost_code_id, t.pay_class_id)].append(t)
        if Module.PRODUCTION_QUANTITY in enabled:
            for cost_code_id, unit, units in t.quantities:
                quantity[(t.job_site_id, t.work_date, cost_code_id, unit)].append((t, units))

    out: dict[tuple[Module, str], Aggregate] = {}

    def add(a: Aggregate) -> None:
        out[(a.module, a.entry_key)] = a

    for (site, day, company, crew), group in manpower.items():
        heads = len({t.employee_id for t in group})
        total_seconds = sum(t.seconds for t in group)
        total = hours(total_seconds)
        average = (Decimal(total_seconds) / Decimal(3600) / heads).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)
        add(
            Aggregate(
                Module.MANPOWER,
                site,
                day,
                (("company_id", company), ("crew_tag", crew)),
                (("average_hours", str(average)), ("manpower", str(heads)), ("total_hours", str(total))),
                frozenset(t.timelog_id for t in group),
            )
        )
    for (site, day, employee, pay_id, cost_code, pay_class), group in timecard.items():
        add(
            Aggregate(
                Module.TIMECARD,
                site,
                day,
                (
                    ("employee_id", employee),
                    ("pay_id", pay_id),
                    ("cost_code_id", cost_code),
                    ("pay_class_id", pay_class),
                ),
                (("hours", str(hours(sum(t.seconds for t in group)))),),
                frozenset(t.timelog_id for t in group),
            )
        )
    for (site, day, cost_code, unit), pairs in quantity.items():
        add(
            Aggregate(
                Module.PRODUCTION_QUANTITY,
                site,
                day,
                (("cost_code_id", cost_code), ("unit_of_measure", unit)),
                (("units", _units(sum((u for _, u in pairs), Decimal(0)))),),
                frozenset(t.timelog_id for t, _ in pairs),
            )
        )
    return out


# --- entry status ------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryState:
    status: Status
    fingerprint: str | None = None
    """None when no timelog contributes to the entry any more."""
    timelog_ids: frozenset[str] = frozenset()
    version: int = 1
    errors: tuple[str, ...] = ()
    last_error: str | None = None
    procore_id: int | None = None
    published_fingerprint: str | None = None
    published_timelog_ids: frozenset[str] | None = None
    publishing_request_id: uuid.UUID | None = None
    publishing_fingerprint: str | None = None
    publishing_timelog_ids: frozenset[str] | None = None
    deleted_timelog_ids: frozenset[str] = field(default=frozenset())
    """Published timelogs of this entry that were deleted (not merely moved) since the publish."""

    @property
    def ever_published(self) -> bool:
        return self.procore_id is not None


def settle(e: EntryState) -> EntryState | None:
    """The resting status for an entry that is not being published; None means it disappears."""
    if e.status is Status.PUBLISHING:
        return e
    if not e.ever_published:
        if e.fingerprint is None:
            return None
        if e.errors:
            return replace(e, status=Status.NON_PUBLISHABLE)
        return replace(e, status=Status.FAILED if e.last_error else Status.TODO)
    if e.fingerprint is None or e.deleted_timelog_ids:
        return replace(e, status=Status.DELETED)
    if e.fingerprint == e.published_fingerprint and e.timelog_ids == e.published_timelog_ids:
        return replace(e, status=Status.PUBLISHED, last_error=None)
    if e.errors:
        return replace(e, status=Status.NON_PUBLISHABLE)
    return replace(e, status=Status.FAILED if e.last_error else Status.UPDATED)


def new_entry(fp: str, timelog_ids: frozenset[str], errors: tuple[str, ...]) -> EntryState:
    state = settle(EntryState(status=Status.TODO, fingerprint=fp, timelog_ids=timelog_ids, errors=errors))
    assert state is not None
    return state


def content_changed(
    e: EntryState,
    fp: str | None,
    timelog_ids: frozenset[str],
    deleted_timelog_ids: frozenset[str],
) -> EntryState | None:
    """Timelogs changed under an entry (fp None: no timelog left). A change while Publishing is kept."""
    if fp == e.fingerprint and timelog_ids == e.timelog_ids and deleted_timelog_ids == e.deleted_timelog_ids:
        return e
    changed = replace(
        e,
        fingerprint=fp,
        timelog_ids=timelog_ids,
        deleted_timelog_ids=deleted_timelog_ids,
        version=e.version + 1,
        last_error=None if fp != e.fingerprint else e.last_error,
    )
    return settle(changed)


def errors_changed(e: EntryState, errors: tuple[str, ...]) -> EntryState | None:
    """Mapping changes re-validate entries: Non publishable ↔ To do (or Updated)."""
    if errors == e.errors:
        return e
    return settle(replace(e, errors=errors))


PUBLISHABLE: dict[PublishAction, frozenset[Status]] = {
    PublishAction.PUBLISH: frozenset({Status.TODO, Status.UPDATED, Status.DELETED, Status.FAILED}),
    PublishAction.REPUBLISH: frozenset({Status.FAILED, Status.DELETED, Status.UPDATED, Status.TODO}),
    PublishAction.FORCE_PUBLISH: frozenset(
        {Status.TODO, Status.UPDATED, Status.DELETED, Status.FAILED, Status.PUBLISHED}
    ),
}


def operation_for(e: EntryState) -> ProcoreOperation | None:
    if not e.ever_published:
        return ProcoreOperation.CREATE if e.fingerprint is not None else None
    if e.fingerprint is None:
        return ProcoreOperation.DELETE
    if e.status is Status.DELETED:
        return ProcoreOperation.REPLACE
    return ProcoreOperation.UPDATE


def publish_requested(
    e: EntryState, action: PublishAction, request_id: uuid.UUID
) -> tuple[EntryState, ProcoreOperation] | None:
    """Move an eligible entry to Publishing; None when the action does not apply to its status."""
    if e.status not in PUBLISHABLE[action]:
        return None
    operation = operation_for(e)
    if operation is None:
        return None
    publishing = replace(
        e,
        status=Status.PUBLISHING,
        publishing_request_id=request_id,
        publishing_fingerprint=e.fingerprint,
        publishing_timelog_ids=e.timelog_ids,
        last_error=None,
    )
    return publishing, operation


def result_arrived(
    e: EntryState,
    request_id: uuid.UUID,
    outcome: PublishOutcome,
    procore_id: int | None,
    message: str | None,
) -> EntryState | None:
    """Apply the publisher's answer. Answers to any request but the current one change nothing."""
    if e.status is not Status.PUBLISHING or e.publishing_request_id != request_id:
        return e
    done = replace(
        e,
        status=Status.TODO,
        publishing_request_id=None,
        publishing_fingerprint=None,
        publishing_timelog_ids=None,
    )
    if outcome is PublishOutcome.PUBLISHED:
        done = replace(
            done,
            procore_id=procore_id,
            published_fingerprint=e.publishing_fingerprint,
            published_timelog_ids=e.publishing_timelog_ids,
            deleted_timelog_ids=frozenset(),
            last_error=None,
        )
    elif outcome is PublishOutcome.DELETED:
        done = replace(
            done,
            procore_id=None,
            published_fingerprint=None,
            published_timelog_ids=None,
            deleted_timelog_ids=frozenset(),
            last_error=None,
        )
    else:
        failed = replace(done, status=Status.FAILED, last_error=message or outcome.value)
        return failed
    return settle(done)


# --- validation and Procore payloads ---------------------------------------------------


class MappingView(Protocol):
    """What validation needs to know about an account's setup, mappings and names."""

    procore_company_id: int | None

    def procore_id(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> int | None: ...

    def procore_name(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None: ...

    def label(self, kind: ReferenceKind, entity_id: str) -> str: ...


def validate(
    module: Module,
    job_site_id: str,
    dims: Mapping[str, str | None],
    content: Mapping[str, str] | None,
    m: MappingView,
) -> tuple[str, ...]:
    """Human-readable reasons an entry cannot be published, one per missing mapping."""
    errors: list[str] = []
    if module is Module.PRODUCTION_QUANTITY and content is not None:
        units = Decimal(content["units"])
        if units != units.to_integral_value():
            errors.append(
                f"Quantity {content['units']} {dims.get('unit_of_measure')} of cost code "
                f"{m.label(ReferenceKind.COST_CODE, str(dims.get('cost_code_id')))} is fractional; "
                "Procore takes whole numbers"
            )
    if m.procore_company_id is None:
        errors.append("Procore is not connected for this account")
    project = m.procore_id(ProcoreEntity.PROJECT, job_site_id)
    site_label = m.label(ReferenceKind.JOB_SITE, job_site_id)
    if project is None:
        errors.append(f"Job site {site_label} is not mapped to a Procore project")
    project_label = m.procore_name(ProcoreEntity.PROJECT, job_site_id) or site_label

    def need(entity: ProcoreEntity, kind: ReferenceKind, mc_id: str | None, message: str, scoped: bool) -> None:
        if mc_id is None:
            return
        if scoped:
            if project is None:
                return  # the project error already says it; nothing can be scoped to it yet
            found = m.procore_id(entity, mc_id, project)
        else:
            found = m.procore_id(entity, mc_id)
        if found is None:
            errors.append(message.format(label=m.label(kind, mc_id), project=project_label))

    if module is Module.MANPOWER:
        need(ProcoreEntity.VENDOR, ReferenceKind.COMPANY, dims.get("company_id"),
             "Company {label} is not mapped to a Procore vendor", False)  # fmt: skip
    elif module is Module.TIMECARD:
        need(ProcoreEntity.EMPLOYEE, ReferenceKind.EMPLOYEE, dims.get("employee_id"),
             "Employee {label} is not mapped to a Procore employee", False)  # fmt: skip
        need(ProcoreEntity.PAYROLL_TYPE, ReferenceKind.PAY_ID, dims.get("pay_id"),
             "Pay ID {label} has no payroll item", False)  # fmt: skip
        need(ProcoreEntity.COST_CODE, ReferenceKind.COST_CODE, dims.get("cost_code_id"),
             "Cost code {label} is not mapped for project {project}", True)  # fmt: skip
        need(ProcoreEntity.CLASSIFICATION, ReferenceKind.PAY_CLASS, dims.get("pay_class_id"),
             "Pay class {label} is not mapped to a Procore classification", False)  # fmt: skip
    else:
        need(ProcoreEntity.COST_CODE, ReferenceKind.COST_CODE, dims.get("cost_code_id"),
             "Cost code {label} is not mapped for project {project}", True)  # fmt: skip
    return tuple(errors)


def marker_for(entry_uuid: uuid.UUID) -> str:
    """A short tag written into Procore records so a publisher can find the record it created."""
    return f"[mc:{entry_uuid.hex[:16]}]"


def origin_id_for(entry_uuid: uuid.UUID) -> int:
    """Procore's timecard `origin_id` is an integer: a stable 53-bit value derived from the entry id."""
    return entry_uuid.int >> (128 - 53)


def procore_payload(
    module: Module,
    entry_uuid: uuid.UUID,
    work_date: date,
    job_site_id: str,
    dims: Mapping[str, str | None],
    content: Mapping[str, str],
    m: MappingView,
) -> dict[str, Any]:
    """The Procore record body (inside its wrapper key) for a valid entry."""
    project = m.procore_id(ProcoreEntity.PROJECT, job_site_id)
    marker = marker_for(entry_uuid)
    if module is Module.MANPOWER:
        crew = dims.get("crew_tag")
        return {
            "date": work_date.isoformat(),
            "num_workers": int(content["manpower"]),
            "num_hours": content["average_hours"],
            "contact_id": m.procore_id(ProcoreEntity.VENDOR, str(dims["company_id"])),
            "notes": f"{crew} {marker}" if crew else marker,
        }
    if module is Module.TIMECARD:
        body: dict[str, Any] = {
            "date": work_date.isoformat(),
            "hours": content["hours"],
            "party_id": m.procore_id(ProcoreEntity.EMPLOYEE, str(dims["employee_id"])),
            "timecard_time_type_id": m.procore_id(ProcoreEntity.PAYROLL_TYPE, str(dims["pay_id"])),
            "origin_id": origin_id_for(entry_uuid),
            "origin_data": marker,
            "description": marker,
        }
        if dims.get("cost_code_id"):
            body["cost_code_id"] = m.procore_id(ProcoreEntity.COST_CODE, str(dims["cost_code_id"]), project)
        return body
    units = Decimal(content["units"])
    if units != units.to_integral_value():
        raise FractionalQuantity(
            f"Procore takes whole quantities; {content['units']} {dims.get('unit_of_measure')} is fractional"
        )
    return {
        "date": work_date.isoformat(),
        "quantity": int(units),
        "unit": dims.get("unit_of_measure"),
        "cost_code_id": m.procore_id(ProcoreEntity.COST_CODE, str(dims["cost_code_id"]), project),
        "description": marker,
    }


class FractionalQuantity(ValueError):
    """Procore quantity logs take whole numbers only; never round silently."""
