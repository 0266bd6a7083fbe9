"""`/_sandbox/companies/{id}/rules`: switch Procore's rules per company (`company_rules.py`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.procore import company_rules
from sandbox.procore.http_util import read_body, sandbox_state
from sandbox.procore.state import ProcoreError

router = APIRouter(prefix="/_sandbox/companies")


@router.get("/{company_id}/rules")
async def get_rules(request: Request, company_id: int) -> Response:
    """The company's rules (all off unless set)."""
    state = sandbox_state(request)
    if company_id not in state.companies:
        raise ProcoreError(404, f"Company {company_id} not found", reason="not_found")
    return JSONResponse(company_rules.rules_for(state, company_id).as_dict())


@router.put("/{company_id}/rules")
async def put_rules(request: Request, company_id: int) -> Response:
    """Set some rules (booleans; those not named keep their value); answers all of them."""
    rules = company_rules.set_rules(sandbox_state(request), company_id, await read_body(request))
    return JSONResponse(rules.as_dict())
