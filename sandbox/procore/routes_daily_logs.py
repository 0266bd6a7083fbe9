"""Daily Log writes and reads: manpower logs, quantity logs, project and company timecard entries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.procore import serializers as ser
from sandbox.procore.filters import daily_log_range, parse_date, parse_id_list, parse_time_range
from sandbox.procore.http_util import (
    empty_ok,
    paged,
    query_list,
    read_body,
    require_company,
    rest_context,
    sandbox_state,
)
from sandbox.procore.state import (
    AnyRecord,
    ManpowerLog,
    ProcoreError,
    QuantityLog,
    RecordKind,
    TimecardEntry,
    fmt_ts,
    require_wrapper,
)

router = APIRouter(prefix="/rest/v1.0")


def _daily_range(request: Request) -> tuple[Any, Any]:
    q = request.query_params
    return daily_log_range(q.get("log_date"), q.get("start_date"), q.get("end_date"), sandbox_state(request).today())


def _deleted(rec: AnyRecord) -> dict[str, Any]:
    """A deleted record shown with its `deleted_at` (rule `deleted_answer: deleted_at`)."""
    return {"deleted_at": fmt_ts(rec.deleted_at)} if rec.deleted_at is not None else {}


def _created_by_filter(request: Request, items: list[AnyRecord]) -> list[AnyRecord]:
    ids = parse_id_list(query_list(request, "filters[created_by_id]"), "filters[created_by_id]")
    return [r for r in items if r.created_by.user_id in ids] if ids else items


# ---------------------------------------------------------------- manpower logs


def _manpower_json(request: Request, rec: AnyRecord) -> dict[str, Any]:
    assert isinstance(rec, ManpowerLog)
    return ser.manpower_log(sandbox_state(request), rec)


@router.get("/projects/{project_id}/manpower_logs")
async def list_manpower_logs(request: Request, project_id: int) -> Response:
    """Approved logs of today unless log_date / start_date+end_date / filters[status] say otherwise."""
    company_id = require_company(request)
    first, last = _daily_range(request)
    items = sandbox_state(request).list_daily("manpower_logs", company_id, project_id, first, last)
    status = request.query_params.get("filters[status]", "approved")
    if status != "all":
        items = [r for r in items if isinstance(r, ManpowerLog) and r.status == status]
    vendor_ids = parse_id_list(query_list(request, "filters[vendor_id]"), "filters[vendor_id]")
    if vendor_ids:
        items = [r for r in items if isinstance(r, ManpowerLog) and r.contact_id in vendor_ids]
    if search := request.query_params.get("filters[search]"):
        items = [r for r in items if isinstance(r, ManpowerLog) and search.lower() in (r.notes or "").lower()]
    return paged(request, _created_by_filter(request, items), lambda r: _manpower_json(request, r))


@router.post("/projects/{project_id}/manpower_logs")
async def create_manpower_log(request: Request, project_id: int) -> Response:
    """Create; 201."""
    company_id = require_company(request)
    state = sandbox_state(request)
    log = state.create_manpower_log(company_id, project_id, await read_body(request), rest_context(request).actor)
    return JSONResponse(ser.manpower_log(state, log), status_code=201)


@router.get("/projects/{project_id}/manpower_logs/{log_id}")
async def show_manpower_log(request: Request, project_id: int, log_id: int) -> Response:
    """Show one."""
    company_id = require_company(request)
    state = sandbox_state(request)
    state.project(company_id, project_id)
    rec = state.shown_record("manpower_logs", log_id, company_id=company_id, project_id=project_id)
    return JSONResponse(_manpower_json(request, rec) | _deleted(rec))


@router.patch("/projects/{project_id}/manpower_logs/{log_id}")
async def update_manpower_log(request: Request, project_id: int, log_id: int) -> Response:
    """Update; 200."""
    company_id = require_company(request)
    state = sandbox_state(request)
    state.project(company_id, project_id)
    fields = require_wrapper(await read_body(request), "manpower_log")
    log = state.update_manpower_log(company_id, project_id, log_id, fields, rest_context(request).actor)
    return JSONResponse(ser.manpower_log(state, log))


# ---------------------------------------------------------------- quantity logs


def _quantity_json(request: Request, rec: AnyRecord) -> dict[str, Any]:
    assert isinstance(rec, QuantityLog)
    return ser.quantity_log(sandbox_state(request), rec)


@router.get("/projects/{project_id}/quantity_logs")
async def list_quantity_logs(request: Request, project_id: int) -> Response:
    """Today's logs unless log_date / start_date+end_date."""
    company_id = require_company(request)
    first, last = _daily_range(request)
    items = sandbox_state(request).list_daily("quantity_logs", company_id, project_id, first, last)
    return paged(request, _created_by_filter(request, items), lambda r: _quantity_json(request, r))


@router.post("/projects/{project_id}/quantity_logs")
async def create_quantity_log(request: Request, project_id: int) -> Response:
    """Create; 201. quantity must be an integer."""
    company_id = require_company(request)
    state = sandbox_state(request)
    log = state.create_quantity_log(company_id, project_id, await read_body(request), rest_context(request).actor)
    return JSONResponse(ser.quantity_log(state, log), status_code=201)


@router.get("/projects/{project_id}/quantity_logs/{log_id}")
async def show_quantity_log(request: Request, project_id: int, log_id: int) -> Response:
    """Show one."""
    company_id = require_company(request)
    state = sandbox_state(request)
    state.project(company_id, project_id)
    rec = state.shown_record("quantity_logs", log_id, company_id=company_id, project_id=project_id)
    return JSONResponse(_quantity_json(request, rec) | _deleted(rec))


@router.patch("/projects/{project_id}/quantity_logs/{log_id}")
async def update_quantity_log(request: Request, project_id: int, log_id: int) -> Response:
    """Update; 200."""
    company_id = require_company(request)
    state = sandbox_state(request)
    state.project(company_id, project_id)
    fields = require_wrapper(await read_body(request), "quantity_log")
    log = state.update_quantity_log(company_id, project_id, log_id, fields, rest_context(request).actor)
    return JSONResponse(ser.quantity_log(state, log))


# ------------------------------------------------ deletes (manpower, quantity, project timecards)


async def _delete(request: Request, kind: RecordKind, project_id: int, record_id: int) -> Response:
    company_id = require_company(request)
    state = sandbox_state(request)
    state.project(company_id, project_id)
    rec = state.record(kind, record_id, company_id=company_id, project_id=project_id)
    state.delete_record(kind, rec, rest_context(request).actor)
    return empty_ok()


@router.delete("/projects/{project_id}/manpower_logs/{log_id}")
async def delete_manpower_log(request: Request, project_id: int, log_id: int) -> Response:
    """Delete; 200 with an empty body."""
    return await _delete(request, "manpower_logs", project_id, log_id)


@router.delete("/projects/{project_id}/quantity_logs/{log_id}")
async def delete_quantity_log(request: Request, project_id: int, log_id: int) -> Response:
    """Delete; 200 with an empty body."""
    return await _delete(request, "quantity_logs", project_id, log_id)


@router.delete("/projects/{project_id}/timecard_entries/{entry_id}")
async def delete_project_timecard(request: Request, project_id: int, entry_id: int) -> Response:
    """Delete; 200 with an empty body."""
    return await _delete(request, "timecard_entries", project_id, entry_id)


# ---------------------------------------------------------------- project timecard entries (Daily Log)


def _project_tc_json(request: Request, rec: AnyRecord) -> dict[str, Any]:
    assert isinstance(rec, TimecardEntry)
    return ser.project_timecard_entry(sandbox_state(request), rec)


@router.get("/projects/{project_id}/timecard_entries")
async def list_project_timecards(request: Request, project_id: int) -> Response:
    """Today's entries unless log_date / start_date+end_date."""
    company_id = require_company(request)
    first, last = _daily_range(request)
    state = sandbox_state(request)
    items = state.list_daily("timecard_entries", company_id, project_id, first, last)
    if state.rules.company(company_id).pending_only_timecard_list:  # rule: approved entries drop out of the list
        items = [r for r in items if isinstance(r, TimecardEntry) and r.approval_status == "pending"]
    return paged(request, _created_by_filter(request, items), lambda r: _project_tc_json(request, r))


@router.post("/projects/{project_id}/timecard_entries")
async def create_project_timecard(request: Request, project_id: int) -> Response:
    """Create; 201."""
    company_id = require_company(request)
    state = sandbox_state(request)
    fields = require_wrapper(await read_body(request), "timecard_entry")
    entry = state.create_timecard_entry(company_id, project_id, fields, rest_context(request).actor, require_date=False)
    return JSONResponse(ser.project_timecard_entry(state, entry), status_code=201)


@router.get("/projects/{project_id}/timecard_entries/{entry_id}")
async def show_project_timecard(request: Request, project_id: int, entry_id: int) -> Response:
    """Show one."""
    company_id = require_company(request)
    state = sandbox_state(request)
    state.project(company_id, project_id)
    rec = state.shown_record("timecard_entries", entry_id, company_id=company_id, project_id=project_id)
    return JSONResponse(_project_tc_json(request, rec))


@router.patch("/projects/{project_id}/timecard_entries/{entry_id}")
async def update_project_timecard(request: Request, project_id: int, entry_id: int) -> Response:
    """Update; 200."""
    company_id = require_company(request)
    state = sandbox_state(request)
    state.project(company_id, project_id)
    fields = require_wrapper(await read_body(request), "timecard_entry")
    entry = state.update_timecard_entry(company_id, project_id, entry_id, fields, rest_context(request).actor)
    return JSONResponse(ser.project_timecard_entry(state, entry))


# ---------------------------------------------------------------- company timecard entries (Timecard tool)


def _company_from_path(request: Request, company_id: int) -> int:
    state = sandbox_state(request)
    state.require_access(rest_context(request).token, company_id)
    return company_id


@router.get("/companies/{company_id}/timecard_entries")
async def list_company_timecards(request: Request, company_id: int) -> Response:
    """All entries of the company; filters[updated_at] and filters[deleted_at] ranges."""
    company_id = _company_from_path(request, company_id)
    q = request.query_params
    updated = (
        parse_time_range(q["filters[updated_at]"], "filters[updated_at]") if q.get("filters[updated_at]") else None
    )
    deleted = (
        parse_time_range(q["filters[deleted_at]"], "filters[deleted_at]") if q.get("filters[deleted_at]") else None
    )
    items = sandbox_state(request).list_company_timecards(
        company_id,
        updated=updated,
        deleted=deleted,
        ids=parse_id_list(query_list(request, "filters[id]"), "filters[id]"),
        party_ids=parse_id_list(query_list(request, "filters[party_id]"), "filters[party_id]"),
        first=parse_date(q["start_date"], "start_date") if q.get("start_date") else None,
        last=parse_date(q["end_date"], "end_date") if q.get("end_date") else None,
    )
    state = sandbox_state(request)
    return paged(request, items, lambda e: ser.company_timecard_entry(state, e))


def _company_tc_body(body: Any) -> tuple[int, dict[str, Any]]:
    fields = require_wrapper(body, "timecard_entry")
    project_id = body.get("project_id")
    if isinstance(project_id, str) and project_id.isdigit():
        project_id = int(project_id)
    if not isinstance(project_id, int) or isinstance(project_id, bool):
        raise ProcoreError(400, "param is missing or the value is empty: project_id")
    return project_id, fields


@router.post("/companies/{company_id}/timecard_entries")
async def create_company_timecard(request: Request, company_id: int) -> Response:
    """Create; 201. Needs top-level project_id and timecard_entry.date."""
    company_id = _company_from_path(request, company_id)
    state = sandbox_state(request)
    project_id, fields = _company_tc_body(await read_body(request))
    entry = state.create_timecard_entry(company_id, project_id, fields, rest_context(request).actor, require_date=True)
    return JSONResponse(ser.company_timecard_entry(state, entry), status_code=201)


@router.get("/companies/{company_id}/timecard_entries/{entry_id}")
async def show_company_timecard(request: Request, company_id: int, entry_id: int) -> Response:
    """Show one."""
    company_id = _company_from_path(request, company_id)
    state = sandbox_state(request)
    rec = state.record("timecard_entries", entry_id, company_id=company_id, project_id=None)
    assert isinstance(rec, TimecardEntry)
    return JSONResponse(ser.company_timecard_entry(state, rec))


@router.patch("/companies/{company_id}/timecard_entries/{entry_id}")
async def update_company_timecard(request: Request, company_id: int, entry_id: int) -> Response:
    """Update; 200. The spec requires project_id; when given it must match the entry's project."""
    company_id = _company_from_path(request, company_id)
    state = sandbox_state(request)
    body = await read_body(request)
    fields = require_wrapper(body, "timecard_entry")
    rec = state.record("timecard_entries", entry_id, company_id=company_id, project_id=None)
    project_id = body.get("project_id")
    if project_id is not None and project_id != rec.project_id:
        raise ProcoreError(422, "project_id cannot be changed", errors={"project_id": ["cannot be changed"]})
    entry = state.update_timecard_entry(company_id, None, entry_id, fields, rest_context(request).actor)
    return JSONResponse(ser.company_timecard_entry(state, entry))


@router.delete("/companies/{company_id}/timecard_entries/{entry_id}")
async def delete_company_timecard(request: Request, company_id: int, entry_id: int) -> Response:
    """Delete; 200 with the deleted entry."""
    company_id = _company_from_path(request, company_id)
    state = sandbox_state(request)
    rec = state.record("timecard_entries", entry_id, company_id=company_id, project_id=None)
    state.delete_record("timecard_entries", rec, rest_context(request).actor)
    assert isinstance(rec, TimecardEntry)
    return JSONResponse(ser.company_timecard_entry(state, rec))
