"""Reference data: me, companies, projects, vendors, people, classifications, cost codes, time types."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.procore import company_rules
from sandbox.procore import serializers as ser
from sandbox.procore.filters import parse_bool, parse_id_list, parse_time_range
from sandbox.procore.http_util import (
    paged,
    query_int,
    query_list,
    require_company,
    rest_context,
    sandbox_state,
)
from sandbox.procore.state import Company, ProcoreError

router = APIRouter(prefix="/rest/v1.0")


def _installed_company(request: Request, company_id: int) -> Company:
    return sandbox_state(request).require_access(rest_context(request).token, company_id)


@router.get("/me")
async def me(request: Request) -> Response:
    """The token's user: the consenting Procore user, or the app's service account."""
    ctx = rest_context(request)
    company_rules.check_company_header(sandbox_state(request), ctx.token, request.headers.get("procore-company-id"))
    user = sandbox_state(request).users.get(ctx.token.user_id) if ctx.token.user_id is not None else None
    return JSONResponse(ser.user(user) if user is not None else ser.me(ctx.client))


@router.get("/companies")
async def companies(request: Request) -> Response:
    """Companies the app is installed in; with a user's token, only those the user is a member of."""
    token = rest_context(request).token
    company_rules.check_company_header(sandbox_state(request), token, request.headers.get("procore-company-id"))
    items = sandbox_state(request).companies_for(token)
    return paged(request, items, ser.company)


@router.get("/projects")
async def projects(request: Request) -> Response:
    """Company projects; filters[by_status] defaults to Active."""
    company_id = query_int(request, "company_id", required=True)
    assert company_id is not None
    company = _installed_company(request, company_id)
    status = request.query_params.get("filters[by_status]", "Active")
    items = list(company.projects.values())
    if status == "Active":
        items = [p for p in items if p.active]
    elif status == "Inactive":
        items = [p for p in items if not p.active]
    ids = parse_id_list(query_list(request, "filters[id]"), "filters[id]")
    if ids:
        items = [p for p in items if p.id in ids]
    if origin := request.query_params.get("filters[origin_id]"):
        items = [p for p in items if p.origin_id == origin]
    if updated := request.query_params.get("filters[updated_at]"):
        start, end = parse_time_range(updated, "filters[updated_at]")
        items = [p for p in items if start <= p.updated_at <= end]
    return paged(request, items, lambda p: ser.project(p, company.name))


@router.get("/companies/{company_id}/projects")
async def company_projects(request: Request, company_id: int) -> Response:
    """Lighter, not paginated."""
    company = _installed_company(request, company_id)
    return JSONResponse([ser.company_project(p) for p in company.projects.values()])


@router.get("/vendors")
async def vendors(request: Request) -> Response:
    """Company vendors."""
    company_id = query_int(request, "company_id", required=True)
    assert company_id is not None
    company = _installed_company(request, company_id)
    items = sorted(company.vendors.values(), key=lambda v: (v.name, v.id))
    ids = parse_id_list(query_list(request, "filters[id]"), "filters[id]")
    if ids:
        items = [v for v in items if v.id in ids]
    if origin := request.query_params.get("filters[origin_id]"):
        items = [v for v in items if v.origin_id == origin]
    if search := request.query_params.get("filters[search]"):
        items = [v for v in items if search.lower() in v.name.lower()]
    if updated := request.query_params.get("filters[updated_at]"):
        start, end = parse_time_range(updated, "filters[updated_at]")
        items = [v for v in items if start <= v.updated_at <= end]
    return paged(request, items, ser.vendor)


@router.get("/companies/{company_id}/people")
async def people(request: Request, company_id: int) -> Response:
    """Company people, including non-user employees."""
    company = _installed_company(request, company_id)
    items = list(company.people.values())
    is_employee = parse_bool(request.query_params.get("filters[is_employee]"))
    if is_employee is not None:
        items = [p for p in items if p.is_employee == is_employee]
    if search := request.query_params.get("filters[search]"):
        items = [p for p in items if search.lower() in p.name.lower()]
    return paged(request, items, ser.person)


@router.get("/companies/{company_id}/work_classifications")
async def company_work_classifications(request: Request, company_id: int) -> Response:
    """All classifications of the company."""
    company = _installed_company(request, company_id)
    return paged(request, list(company.work_classifications.values()), lambda w: ser.work_classification(w, company_id))


@router.get("/projects/{project_id}/work_classifications")
async def project_work_classifications(request: Request, project_id: int) -> Response:
    """Classifications assigned to the project, plus company-wide ones (no project_ids)."""
    company_id = require_company(request)
    sandbox_state(request).project(company_id, project_id)
    company = sandbox_state(request).companies[company_id]
    items = [w for w in company.work_classifications.values() if not w.project_ids or project_id in w.project_ids]
    return paged(request, items, lambda w: ser.work_classification(w, company_id))


@router.get("/cost_codes")
async def cost_codes(request: Request) -> Response:
    """Cost codes of a project (extended view, with line_item_types)."""
    company_id = require_company(request)
    project_id = query_int(request, "project_id", required=True)
    assert project_id is not None
    project = sandbox_state(request).project(company_id, project_id)
    items = sorted(project.cost_codes.values(), key=lambda c: (c.full_code, c.id))
    ids = parse_id_list(query_list(request, "filters[id]"), "filters[id]")
    if ids:
        items = [c for c in items if c.id in ids]
    if origin := request.query_params.get("filters[origin_id]"):
        items = [c for c in items if c.origin_id == origin]
    return paged(request, items, ser.cost_code)


@router.get("/companies/{company_id}/timecard_time_types")
async def company_time_types(request: Request, company_id: int) -> Response:
    """Not paginated; only id and time_type, as in the spec."""
    company = _installed_company(request, company_id)
    return JSONResponse([ser.time_type(t, company_id, full=False) for t in company.time_types.values()])


@router.get("/timecard_time_types")
async def project_time_types(request: Request) -> Response:
    """Time types available on a project (paginated)."""
    company_id = require_company(request)
    project_id = query_int(request, "project_id", required=True)
    if project_id is None:
        raise ProcoreError(400, "Missing required parameter: project_id")
    state = sandbox_state(request)
    state.project(company_id, project_id)
    return paged(request, state.time_types_for(company_id), lambda t: ser.time_type(t, company_id))
