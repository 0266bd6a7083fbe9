"""Control API for Procore's stricter rules (`rules.py`): `/_sandbox/rules…`, JSON, no auth (per-company rules of
the OAuth/webhook kind are in `control_rules.py`)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from sandbox.procore.http_util import sandbox_state
from sandbox.procore.rules import (
    DeletedAnswer,
    Precision,
    RateLimitScope,
    TimeEntryMode,
    company_json,
    project_json,
)

router = APIRouter(prefix="/_sandbox/rules")


class CompanyRulesIn(BaseModel):
    pending_only_timecard_list: bool | None = None
    timestamp_precision: Precision | None = None
    deleted_answer: DeletedAnswer | None = None
    bulk_create_forbidden: bool | None = None


class ProjectRulesIn(BaseModel):
    time_entry_mode: TimeEntryMode | None = None
    completed_days: list[date] | None = None
    directory: list[int] | None = None
    enforce_directory: bool | None = None
    """True: refuse people outside the project's directory as `PUT /_sandbox/projects/{id}/people` set it (everyone
    until then); False: enforce nothing (clears `directory` too). `directory` alone enforces that list."""


class GlobalRulesIn(BaseModel):
    rate_limit_scope: RateLimitScope | None = None


def _given(body: BaseModel) -> dict[str, Any]:
    return {k: v for k, v in body.model_dump().items() if v is not None}


@router.get("")
async def get_rules(request: Request) -> Response:
    """Every rule switched on, and the global ones."""
    rules = sandbox_state(request).rules
    return JSONResponse(
        {
            "rate_limit_scope": rules.rate_limit_scope,
            "companies": {str(c): company_json(r) for c, r in rules.companies.items()},
            "projects": {str(p): project_json(r) for p, r in rules.projects.items()},
        }
    )


@router.put("")
async def put_global_rules(request: Request, body: GlobalRulesIn) -> Response:
    """Rules that are not per company: `rate_limit_scope` (company | token). Restarts the rate windows."""
    state = sandbox_state(request)
    if body.rate_limit_scope is not None:
        state.rules.rate_limit_scope = body.rate_limit_scope
        state.limiter.reset()
    return JSONResponse({"rate_limit_scope": state.rules.rate_limit_scope})


@router.put("/companies/{company_id}")
async def put_company_rules(request: Request, company_id: int, body: CompanyRulesIn) -> Response:
    """Switch a company's rules (fields left out stay as they are)."""
    rules = sandbox_state(request).rules.set_company(company_id, _given(body))
    return JSONResponse(company_json(rules))


@router.put("/projects/{project_id}")
async def put_project_rules(request: Request, project_id: int, body: ProjectRulesIn) -> Response:
    """Switch a project's rules: time-entry mode, completed Daily Log days, directory (fields left out stay)."""
    changes = _given(body)
    if changes.get("enforce_directory") is False:
        changes["directory"] = None
    rules = sandbox_state(request).rules.set_project(project_id, changes)
    return JSONResponse(project_json(rules))
