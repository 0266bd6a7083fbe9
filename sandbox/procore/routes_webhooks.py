"""Webhooks v1.0: hooks and triggers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.procore import serializers as ser
from sandbox.procore import webhooks as wh
from sandbox.procore.http_util import (
    empty_ok,
    query_int,
    read_body,
    require_company,
    rest_context,
    sandbox_state,
)

router = APIRouter(prefix="/rest/v1.0/webhooks")


@router.get("/hooks")
async def list_hooks(request: Request) -> Response:
    """Hooks of a company (company_id) or a project (project_id); not paginated."""
    company_id = require_company(request)
    state = sandbox_state(request)
    scope_company = query_int(request, "company_id")
    scope_project = query_int(request, "project_id")
    namespace = request.query_params.get("namespace")
    hooks = [h for h in state.hooks.values() if wh.in_scope(state, h, company_id)]
    if scope_project is not None:
        hooks = [h for h in hooks if h.project_id == scope_project]
    elif scope_company is not None:
        hooks = [h for h in hooks if h.company_id == scope_company]
    if namespace:
        hooks = [h for h in hooks if h.namespace == namespace]
    return JSONResponse([ser.hook(h) for h in hooks])


@router.post("/hooks")
async def create_hook(request: Request) -> Response:
    """Create; 201."""
    company_id = require_company(request)
    hook = wh.create_hook(
        sandbox_state(request), await read_body(request), company_id, rest_context(request).actor.user_id
    )
    return JSONResponse(ser.hook(hook), status_code=201)


@router.patch("/hooks/{hook_id}")
async def update_hook(request: Request, hook_id: int) -> Response:
    """Update; 200."""
    company_id = require_company(request)
    hook = wh.update_hook(sandbox_state(request), hook_id, await read_body(request), company_id)
    return JSONResponse(ser.hook(hook))


@router.delete("/hooks/{hook_id}")
async def delete_hook(request: Request, hook_id: int) -> Response:
    """Delete (with its triggers); 200 with an empty body."""
    wh.delete_hook(sandbox_state(request), hook_id, require_company(request))
    return empty_ok()


@router.get("/hooks/{hook_id}/triggers")
async def list_triggers(request: Request, hook_id: int) -> Response:
    """Triggers of one hook."""
    state = sandbox_state(request)
    wh.get_hook(state, hook_id, require_company(request))
    return JSONResponse([ser.trigger(t) for t in state.triggers.values() if t.hook_id == hook_id])


@router.post("/hooks/{hook_id}/triggers")
async def create_trigger(request: Request, hook_id: int) -> Response:
    """Create; 201."""
    trigger = wh.create_trigger(
        sandbox_state(request),
        hook_id,
        await read_body(request),
        require_company(request),
        rest_context(request).actor.user_id,
    )
    return JSONResponse(ser.trigger(trigger), status_code=201)


@router.delete("/hooks/{hook_id}/triggers/{trigger_id}")
async def delete_trigger(request: Request, hook_id: int, trigger_id: int) -> Response:
    """Delete; 200 with an empty body."""
    wh.delete_trigger(sandbox_state(request), hook_id, trigger_id, require_company(request))
    return empty_ok()
