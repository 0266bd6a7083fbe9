"""v1.1 project timecard entries: `POST /rest/v1.1/projects/{project_id}/project_timecard_entries/bulk_create`.

Documented (openapi-subset.json, from Procore's 2026 catalog): body `{timecard_entries: [{project_id*, …}]}` (flat
items, no wrapper, `origin_id` a string), at most 25 entries (400 beyond), 403 without beta access, 422, and 201
`{timecard_entries: [created…]}`. Procore calls it "a single transaction"; third-party descriptions of the same spec
say partial failures may occur. Not documented, so **assumed** here: each item is created on its own; refused items
are left out of `timecard_entries` and reported in `errors: [{index, origin_id, message, errors}]` (201 while at
least one item was created, 422 with the same body when none was).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.procore.http_util import read_body, require_company, rest_context, sandbox_state
from sandbox.procore.state import ProcoreError, SandboxState, TimecardEntry, fmt_decimal, fmt_ts

router = APIRouter(prefix="/rest/v1.1")

MAX_BULK = 25


def bulk_timecard_entry(state: SandboxState, e: TimecardEntry) -> dict[str, Any]:
    """The v1.1 Timesheets field set: flat ids, `origin_id` and `lunch_time` as strings."""
    return {
        "id": e.id,
        "project_id": e.project_id,
        "company_id": e.company_id,
        "date": e.date.isoformat(),
        "hours": fmt_decimal(e.hours),
        "time_in": fmt_ts(e.time_in),
        "time_out": fmt_ts(e.time_out),
        "lunch_time": None if e.lunch_time is None else str(e.lunch_time),
        "description": e.description,
        "billable": e.billable,
        "timecard_time_type_id": e.timecard_time_type_id,
        "cost_code_id": e.cost_code_id,
        "line_item_type_id": e.line_item_type_id,
        "party_id": e.party_id,
        "timesheet_id": e.timesheet_id,
        "crew_id": e.crew_id,
        "sub_job_id": e.sub_job_id,
        "location_id": e.location_id,
        "origin_id": None if e.origin_id is None else str(e.origin_id),
        "origin_data": e.origin_data,
        "approval_status": e.approval_status,
        "created_at": fmt_ts(e.created_at),
        "updated_at": fmt_ts(e.updated_at),
        "deleted_at": fmt_ts(e.deleted_at),
    }


@router.post("/projects/{project_id}/project_timecard_entries/bulk_create")
async def bulk_create_timecards(request: Request, project_id: int) -> Response:
    """Create up to 25 project timecard entries; per-item results (refused items in `errors`, assumed shape)."""
    company_id = require_company(request)
    state = sandbox_state(request)
    if state.rules.company(company_id).bulk_create_forbidden:
        raise ProcoreError(403, "Bulk create of timecard entries requires beta access", reason="forbidden")
    state.project(company_id, project_id)
    body = await read_body(request)
    items = body.get("timecard_entries") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ProcoreError(400, "param is missing or the value is empty: timecard_entries")
    if len(items) > MAX_BULK:
        raise ProcoreError(400, f"At most {MAX_BULK} timecard entries can be created at once; got {len(items)}")
    actor = rest_context(request).actor
    created: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        origin = item.get("origin_id") if isinstance(item, dict) else None
        try:
            if not isinstance(item, dict):
                raise ProcoreError(422, "each timecard entry must be an object")
            if item.get("project_id") not in (project_id, str(project_id)):
                raise ProcoreError(
                    422, "project_id must be the project of the path", errors={"project_id": ["is invalid"]}
                )
            fields = {k: v for k, v in item.items() if k != "project_id"}
            entry = state.create_timecard_entry(company_id, project_id, fields, actor, require_date=False)
        except ProcoreError as error:
            errors.append({"index": index, "origin_id": origin, "message": error.message, "errors": error.errors or {}})
            continue
        created.append(bulk_timecard_entry(state, entry))
    answer = {"timecard_entries": created, "errors": errors}
    return JSONResponse(answer, status_code=201 if created else 422)
