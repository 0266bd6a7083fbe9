"""Pure aggregation, entry status rules, validation and Procore payloads. No I/O here.

- `aggregate` turns the current timelogs of some (job site, day) groups into entries of the
  enabled modules; the result must equal a from-scratch recompute, whatever the event order.
- `EntryState` + the transition functions are the status machine of DESIGN.md.
- `validate` names each missing mapping; `procore_payload` builds the Procore record.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol

from shared.events import (
    Module,
    Permission,
    ProcoreEntity,
    ProcoreOperation,
    PublishAction,
    PublishOutcome,
    ReferenceKind,
    permission_refusal,
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
class EntryRef:
    """The identity of an entry: module, job site, day and the module's dimensions (MODULE_DIMS order)."""

    module: Module
    job_site_id: str
    work_date: date
    dims: tuple[str | None, ...]

    @cached_property
    def key(self) -> str:
        return json.dumps([self.job_site_id, self.work_date.isoformat(), *self.dims], separators=(",", ":"))

    def dims_dict(self) -> dict[str, str | None]:
        return dict(zip(MODULE_DIMS[self.module], self.dims, strict=True))


def entry_id(account_id: str, module: Module, key: str) -> uuid.UUID:
    """Deterministic, so a rebuild from the stored timelogs yields the very same entries."""
    return uuid.uuid5(ENTRY_NAMESPACE, f"{account_id}\x1f{module.value}\x1f{key}")


@dataclass
class Totals:
    """What an entry adds up; kept so each change applies as a delta (and equals a recompute)."""

    seconds: int = 0
    units: Decimal = Decimal(0)
    contributions: int = 0
    members: Counter[str] = field(default_factory=Counter)
    """Manpower only: timelogs per employee, so head count stays exact under deletes and moves."""

    @property
    def empty(self) -> bool:
        return self.contributions == 0

    def add(self, seconds: int, units: Decimal, member: str | None, sign: int) -> None:
        self.seconds += sign * seconds
        self.units += sign * units
        self.contributions += sign
        if member is not None:
            self.members[member] += sign
            if self.members[member] == 0:
                del self.members[member]

    def merged(self, delta: Totals) -> Totals:
        """These totals with a delta applied (members that drop to zero leave)."""
        members = self.members
        if delta.members:
            members = self.members.copy()
            for member, count in delta.members.items():
                members[member] += count
                if members[member] <= 0:
                    del members[member]
        return Totals(
            self.seconds + delta.seconds,
            self.units + delta.units,
            self.contributions + delta.contributions,
            members,
        )


Contribution = tuple[EntryRef, int, Decimal, str | None]
"""(entry, seconds, units, member) that one timelog adds to one entry."""


def contributions(t: Timelog, modules: Iterable[Module]) -> list[Contribution]:
    """Every entry a timelog counts towards, for the enabled modules."""
    out: list[Contribution] = []
    for module in modules:
        if module is Module.MANPOWER:
            ref = EntryRef(module, t.job_site_id, t.work_date, (t.company_id, t.crew_tag))
            out.append((ref, t.seconds, Decimal(0), t.employee_id))
        elif module is Module.TIMECARD:
            dims = (t.employee_id, t.pay_id, t.cost_code_id, t.pay_class_id)
            out.append((EntryRef(module, t.job_site_id, t.work_date, dims), t.seconds, Decimal(0), None))
        else:
            for cost_code_id, unit, units in t.quantities:
                ref = EntryRef(module, t.job_site_id, t.work_date, (cost_code_id, unit))
                out.append((ref, 0, units, None))
    return out


def hours(seconds: int) -> Decimal:
    return (Decimal(seconds) / Decimal(3600)).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)


def _units(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def content_of(module: Module, totals: Totals) -> dict[str, str] | None:
    """The numbers users see (and Procore gets); None for an entry no timelog contributes to."""
    if totals.empty:
        return None
    if module is Module.MANPOWER:
        heads = len(totals.members)
        if heads == 0:
            raise ValueError("a manpower entry has timelogs but no employees: its totals drifted (run rebuild)")
        average = (Decimal(totals.seconds) / Decimal(3600) / heads).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)
        return {"average_hours": str(average), "manpower": str(heads), "total_hours": str(hours(totals.seconds))}
    if module is Module.TIMECARD:
        return {"hours": str(hours(totals.seconds))}
    return {"units": _units(totals.units)}


def fingerprint(content: Mapping[str, Any]) -> str:
    """A canonical, compact rendering of the content: equal content, equal fingerprint."""
    return ";".join(f"{k}={content[k]}" for k in sorted(content))


def aggregate(timelogs: Iterable[Timelog], modules: Iterable[Module]) -> dict[EntryRef, Totals]:
    """From scratch: the entries of the enabled modules for exactly these (current) timelogs."""
    enabled = list(modules)
    out: dict[EntryRef, Totals] = defaultdict(Totals)
    for t in timelogs:
        for ref, seconds, units, member in contributions(t, enabled):
            out[ref].add(seconds, units, member, +1)
    return dict(out)


# --- entry status ------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryState:
    status: Status
    fingerprint: str | None = None
    """None when no timelog contributes to the entry any more."""
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
    """Timelogs this entry was published (or is being published) with that have since been deleted."""

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
    if e.fingerprint == e.published_fingerprint:
        return replace(e, status=Status.PUBLISHED, last_error=None)
    if e.errors:
        return replace(e, status=Status.NON_PUBLISHABLE)
    return replace(e, status=Status.FAILED if e.last_error else Status.UPDATED)


def new_entry(fp: str, errors: tuple[str, ...]) -> EntryState:
    state = settle(EntryState(status=Status.TODO, fingerprint=fp, errors=errors))
    assert state is not None
    return state


def content_changed(e: EntryState, fp: str | None, deleted_timelog_ids: frozenset[str]) -> EntryState | None:
    """Timelogs changed under an entry (fp None: no timelog left). A change while Publishing is kept."""
    if fp == e.fingerprint and deleted_timelog_ids == e.deleted_timelog_ids:
        return e
    changed = replace(
        e,
        fingerprint=fp,
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
    if e.deleted_timelog_ids:
        # Deleted (and still Failed after a replace that did not go through): the record goes, then comes back
        return ProcoreOperation.REPLACE
    return ProcoreOperation.UPDATE


def publish_requested(
    e: EntryState, action: PublishAction, request_id: uuid.UUID, timelog_ids: frozenset[str]
) -> tuple[EntryState, ProcoreOperation] | None:
    """Move an eligible entry to Publishing; None when the action does not apply to its status.

    `timelog_ids` are the timelogs the entry holds now: the ones it will have been published with.
    """
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
        publishing_timelog_ids=timelog_ids,
        last_error=None,
    )
    return publishing, operation


def publish_refused(e: EntryState, reason: str) -> EntryState:
    """A publish command that cannot be carried out for this entry (no Procore company chosen, its job site's
    project not mapped, a payload Procore cannot take): Failed with the reason, so the user sees what to fix.

    Only an entry the command applies to is refused; one being published keeps waiting for its result."""
    if e.status is Status.PUBLISHING:
        return e
    return replace(e, status=Status.FAILED, last_error=reason)


REJECTED = "rejected"
"""The history outcome of a publish command refused for its requester (nothing else about the entry changes)."""


def requester_refusal(permissions: Sequence[str] | None) -> str | None:
    """Why the requester of a publish command may not publish (None: they may). Checked here, where the entries
    live, whoever sent the command: fail closed without a permissions list, refused without procore.publish."""
    return permission_refusal(Permission.PUBLISH, permissions)


def publish_blocker(m: MappingView, job_site_id: str) -> str | None:
    """Why entries of this job site cannot be published right now (None: they can)."""
    if m.procore_company_id is None:
        return "Choose the Procore company in Setup, then publish again"
    if m.procore_id(ProcoreEntity.PROJECT, job_site_id) is None:
        site = m.label(ReferenceKind.JOB_SITE, job_site_id)
        text = f"Job site {site} is not mapped to a Procore project"
        if broken := m.broken_reason(ProcoreEntity.PROJECT, job_site_id):
            text = f"{text} ({broken})"
        return f"{text}; map it in Setup, then publish again"
    return None


NOTHING_TO_PUBLISH = "Nothing to publish: no timelog counts towards this entry"


def redrive_delay(redrives: int, after_s: float, max_s: float) -> float:
    """How long to wait for a publish result before re-sending the request (again): the timeout at first,
    doubling with each re-drive, capped, so a publisher that is down for long is not flooded."""
    return min(after_s * 2 ** min(redrives, 30), max(max_s, after_s))


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
            # a timelog deleted while its publish was in flight still makes the entry Deleted
            deleted_timelog_ids=e.deleted_timelog_ids & (e.publishing_timelog_ids or frozenset()),
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

    def broken_reason(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None:
        """Why a mapping was cleared (its Procore entity disappeared), if it was."""


def timelog_deleted(e: EntryState, timelog_id: str) -> frozenset[str]:
    """The entry's deleted set after `timelog_id` was deleted: only timelogs it was published with count."""
    published = (e.published_timelog_ids or frozenset()) | (e.publishing_timelog_ids or frozenset())
    return e.deleted_timelog_ids | {timelog_id} if timelog_id in published else e.deleted_timelog_ids


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
        text = f"Job site {site_label} is not mapped to a Procore project"
        broken = m.broken_reason(ProcoreEntity.PROJECT, job_site_id)
        errors.append(f"{text}: {broken}" if broken else text)
    project_label = m.procore_name(ProcoreEntity.PROJECT, job_site_id) or site_label

    def need(entity: ProcoreEntity, kind: ReferenceKind, mc_id: str | None, message: str, scoped: bool) -> None:
        if mc_id is None:
            return
        if scoped:
            if project is None:
                return  # the project error already says it; nothing can be scoped to it yet
            found, broken = m.procore_id(entity, mc_id, project), m.broken_reason(entity, mc_id, project)
        else:
            found, broken = m.procore_id(entity, mc_id), m.broken_reason(entity, mc_id)
        if found is None:
            text = message.format(label=m.label(kind, mc_id), project=project_label)
            errors.append(f"{text}: {broken}" if broken else text)

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


def mapping_needs(ref: EntryRef) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The (entity, MobiClocks id) mappings and (kind, id) names `validate` may look up for an entry."""
    ids = {(ProcoreEntity.PROJECT.value, ref.job_site_id)}
    names = {(ReferenceKind.JOB_SITE.value, ref.job_site_id)}
    for dim, value in zip(MODULE_DIMS[ref.module], ref.dims, strict=True):
        if value is None or dim not in _ENTITY_OF_DIM:
            continue
        entity, kind = _ENTITY_OF_DIM[dim]
        ids.add((entity.value, value))
        names.add((kind.value, value))
    return ids, names


_ENTITY_OF_DIM: dict[str, tuple[ProcoreEntity, ReferenceKind]] = {
    "company_id": (ProcoreEntity.VENDOR, ReferenceKind.COMPANY),
    "employee_id": (ProcoreEntity.EMPLOYEE, ReferenceKind.EMPLOYEE),
    "pay_id": (ProcoreEntity.PAYROLL_TYPE, ReferenceKind.PAY_ID),
    "cost_code_id": (ProcoreEntity.COST_CODE, ReferenceKind.COST_CODE),
    "pay_class_id": (ProcoreEntity.CLASSIFICATION, ReferenceKind.PAY_CLASS),
}


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
