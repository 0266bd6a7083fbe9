"""Procore JSON shapes for the sandbox's entities (per openapi-subset.json). Pure functions."""

from __future__ import annotations

from typing import Any

from sandbox.procore.state import (
    Actor,
    Client,
    Company,
    CostCode,
    Hook,
    ManpowerLog,
    Person,
    Project,
    QuantityLog,
    SandboxState,
    TimecardEntry,
    TimeType,
    Trigger,
    User,
    Vendor,
    WorkClassification,
    fmt_decimal,
    fmt_ts,
)

Json = dict[str, Any]


def _ref(id_: int | None, name: str | None) -> Json | None:
    return None if id_ is None else {"id": id_, "name": name or ""}


def _actor(actor: Actor) -> Json:
    return {"id": actor.user_id, "login": actor.login, "name": actor.name}


def _location(location_id: int | None) -> Json | None:
    if location_id is None:
        return None
    return {"id": location_id, "name": f"Location {location_id}", "node_name": f"Location {location_id}"}


def company(c: Company) -> Json:
    return {"id": c.id, "name": c.name, "is_active": c.is_active, "my_company": True}


def me(client: Client) -> Json:
    return {"id": client.user_id, "login": f"{client.client_id}@apps.procore.example", "name": client.name}


def user(u: User) -> Json:
    return {"id": u.id, "login": u.login, "name": u.name}


def project(p: Project, company_name: str) -> Json:
    return {
        "id": p.id,
        "name": p.name,
        "display_name": f"{p.project_number} - {p.name}" if p.project_number else p.name,
        "project_number": p.project_number,
        "active": p.active,
        "origin_id": p.origin_id,
        "origin_data": None,
        "created_at": fmt_ts(p.created_at),
        "updated_at": fmt_ts(p.updated_at),
        "time_zone": "UTC",
        "company": {"id": p.company_id, "name": company_name},
    }


def company_project(p: Project) -> Json:
    """The lighter `GET /companies/{id}/projects` shape (no updated_at)."""
    return {
        "id": p.id,
        "name": p.name,
        "status_name": "Active" if p.active else "Inactive",
        "stage_name": "Course of Construction",
    }


def vendor(v: Vendor) -> Json:
    return {
        "id": v.id,
        "name": v.name,
        "abbreviated_name": v.abbreviated_name,
        "origin_id": v.origin_id,
        "origin_data": None,
        "is_active": v.is_active,
        "created_at": fmt_ts(v.created_at),
        "updated_at": fmt_ts(v.updated_at),
    }


def person(p: Person) -> Json:
    return {
        "id": p.id,
        "first_name": p.first_name,
        "last_name": p.last_name,
        "employee_id": p.employee_id,
        "is_employee": p.is_employee,
        "user_id": p.user_id,
        "user_uuid": None,
        "work_classification_id": p.work_classification_id,
        "origin_id": p.origin_id,
        "contact": {"is_active": p.is_active, "email": p.email},
    }


def work_classification(w: WorkClassification, company_id: int) -> Json:
    return {
        "id": w.id,
        "name": w.name,
        "abbreviation": w.abbreviation,
        "company_id": company_id,
        "deletable": True,
        "company_visible": not w.project_ids,
        "project_ids": list(w.project_ids),
        "created_at": fmt_ts(w.created_at),
        "updated_at": fmt_ts(w.updated_at),
    }


def cost_code(c: CostCode) -> Json:
    """The extended view. `standard_cost_code_id` null (no standard codes in the sandbox)."""
    code = c.full_code.split("-")[-1]
    return {
        "id": c.id,
        "name": c.name,
        "full_code": c.full_code,
        "code": code,
        "sortable_code": c.full_code,
        "origin_id": c.origin_id,
        "origin_data": None,
        "standard_cost_code_id": None,
        "biller": "Project",
        "biller_id": c.project_id,
        "biller_type": "Project",
        "budgeted": False,
        "position": None,
        "created_at": fmt_ts(c.created_at),
        "updated_at": fmt_ts(c.updated_at),
        "deleted_at": None,
        "line_item_types": [
            {"id": t.id, "name": t.name, "code": t.code, "base_type": t.base_type} for t in c.line_item_types
        ],
    }


def time_type(t: TimeType, company_id: int, *, full: bool = True) -> Json:
    body: Json = {"id": t.id, "time_type": t.time_type}
    if full:
        body |= {
            "abbreviated_time_type": t.abbreviated_time_type,
            "global": t.is_global,
            "company_id": company_id,
        }
    return body


def _cost_code_ref(state: SandboxState, company_id: int, cost_code_id: int | None) -> Json | None:
    code = state.cost_code(company_id, cost_code_id)
    return _ref(cost_code_id, code.name if code else None)


def manpower_log(state: SandboxState, log: ManpowerLog) -> Json:
    company_ = state.companies[log.company_id]
    v = company_.vendors.get(log.contact_id) if log.contact_id is not None else None
    user = next((p for p in company_.people.values() if log.user_id in (p.user_id, p.id)), None)
    return {
        "id": log.id,
        "date": log.date.isoformat(),
        "datetime": fmt_ts(log.datetime_),
        "num_workers": log.num_workers,
        "num_hours": fmt_decimal(log.num_hours),
        "man_hours": fmt_decimal(log.num_hours * log.num_workers),
        "notes": log.notes,
        "status": log.status,
        "position": log.position,
        "created_at": fmt_ts(log.created_at),
        "updated_at": fmt_ts(log.updated_at),
        "vendor": _ref(log.contact_id, v.name if v else None),
        "contact": None if v is None else {"id": v.id, "name": v.name, "vendor_name": v.name},
        "user": None if user is None else {"id": log.user_id, "login": user.email or "", "name": user.name},
        "cost_code": _cost_code_ref(state, log.company_id, log.cost_code_id),
        "location": _location(log.location_id),
        "trade": None if log.trade_id is None else {"id": log.trade_id, "name": f"Trade {log.trade_id}"},
        "created_by": _actor(log.created_by),
        "attachments": [],
        "custom_fields": {},
        "permissions": {"can_update": True, "can_delete": True},
    }


def quantity_log(state: SandboxState, log: QuantityLog) -> Json:
    v = state.companies[log.company_id].vendors.get(log.vendor_id) if log.vendor_id is not None else None
    return {
        "id": log.id,
        "date": log.date.isoformat(),
        "datetime": None,
        "description": log.description,
        "quantity": log.quantity,
        "unit": log.unit,
        "position": log.position,
        "created_at": fmt_ts(log.created_at),
        "updated_at": fmt_ts(log.updated_at),
        "cost_code": _cost_code_ref(state, log.company_id, log.cost_code_id),
        "vendor": _ref(log.vendor_id, v.name if v else None),
        "location": _location(log.location_id),
        "created_by": _actor(log.created_by),
        "attachments": [],
        "daily_log_segment_id": log.daily_log_segment_id,
        "daily_log_segment": None,
    }


def _timecard_common(state: SandboxState, e: TimecardEntry) -> Json:
    company_ = state.companies[e.company_id]
    party = company_.people.get(e.party_id) if e.party_id is not None else None
    tt = company_.time_types.get(e.timecard_time_type_id) if e.timecard_time_type_id is not None else None
    return {
        "id": e.id,
        "date": e.date.isoformat(),
        "hours": fmt_decimal(e.hours),
        "time_in": fmt_ts(e.time_in),
        "time_out": fmt_ts(e.time_out),
        "billable": e.billable,
        "description": e.description,
        "approval_status": e.approval_status,
        "origin_id": e.origin_id,
        "origin_data": e.origin_data,
        "created_at": fmt_ts(e.created_at),
        "updated_at": fmt_ts(e.updated_at),
        "deleted_at": fmt_ts(e.deleted_at),
        "party": _ref(e.party_id, party.name if party else None),
        "timecard_time_type": None if tt is None else time_type(tt, e.company_id),
        "cost_code": _cost_code_ref(state, e.company_id, e.cost_code_id),
        "line_item_type_id": e.line_item_type_id,
        "sub_job": None if e.sub_job_id is None else {"id": e.sub_job_id, "name": "", "code": ""},
        "timesheet": None if e.timesheet_id is None else {"id": e.timesheet_id},
        "crew": None if e.crew_id is None else {"id": e.crew_id, "name": f"Crew {e.crew_id}"},
        "created_by": _actor(e.created_by),
        "login_information": None,
        "procore_signature": None,
        "custom_fields": {},
        "automatically_split_timecard_entries": [],
    }


def project_timecard_entry(state: SandboxState, e: TimecardEntry) -> Json:
    """Daily Log field set: lunch_time is an integer (minutes)."""
    return _timecard_common(state, e) | {
        "datetime": None,
        "lunch_time": e.lunch_time,
        "timesheet_status": e.approval_status,
        "location": _location(e.location_id),
        "injured": False,
        "signed": False,
    }


def company_timecard_entry(state: SandboxState, e: TimecardEntry) -> Json:
    """Timecard tool ("MyTime") field set: lunch_time is a string."""
    p = state.companies[e.company_id].projects.get(e.project_id)
    return _timecard_common(state, e) | {
        "lunch_time": None if e.lunch_time is None else str(e.lunch_time),
        "in_progress": False,
        "timecard_type": "regular",
        "project": _ref(e.project_id, p.name if p else None),
        "clock_in": None,
        "clock_out": None,
    }


def hook(h: Hook) -> Json:
    return {
        "id": h.id,
        "api_version": h.api_version,
        "namespace": h.namespace,
        "destination_url": h.destination_url,
        "destination_headers": h.destination_headers,
        "owned_by_company_id": h.company_id,
        "owned_by_project_id": h.project_id,
        "owned_by_user_id": h.owned_by_user_id,
    }


def trigger(t: Trigger) -> Json:
    return {
        "id": t.id,
        "webhook_hook_id": t.hook_id,
        "resource_name": t.resource_name,
        "resource_id": None,
        "event_type": t.event_type,
        "company_id": t.company_id,
        "project_id": t.project_id,
        "user_id": t.user_id,
    }
