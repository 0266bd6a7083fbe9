"""The FastAPI app: routers plus the request pipeline (log, faults, auth, company header, rate limit)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.procore import (
    control,
    control_rules,
    control_strict_rules,
    project_directory,
    routes_bulk,
    routes_daily_logs,
    routes_oauth,
    routes_reference,
    routes_webhooks,
)
from sandbox.procore.faults import Fault
from sandbox.procore.filters import FilterError
from sandbox.procore.http_util import RestContext, error_response
from sandbox.procore.ratelimit import OLD_429_MESSAGE, RateDecision
from sandbox.procore.state import ProcoreError, SandboxState
from sandbox.procore.webhooks import WebhookDispatcher

# The only /rest calls that do not need Procore-Company-Id.
COMPANY_HEADER_EXEMPT = {("GET", "/rest/v1.0/me"), ("GET", "/rest/v1.0/companies")}
_REDACTED = {"client_secret", "refresh_token", "code", "token", "access_token"}


class DropConnection(Exception):
    """Raised after the response has started so the server closes the connection mid-answer."""


def _dropped_response() -> Response:
    async def explode() -> AsyncIterator[bytes]:
        raise DropConnection("sandbox fault: connection dropped")
        yield b""  # pragma: no cover - makes this an async generator

    return StreamingResponse(explode(), status_code=200, media_type="application/json")


def _log_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type or not content_type:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")
        if isinstance(body, dict):
            body = {k: ("***" if k in _REDACTED else v) for k, v in body.items()}
        return body
    return f"<{len(raw)} bytes {content_type}>"


def _company_header(request: Request) -> tuple[str | None, int | None]:
    raw = request.headers.get("procore-company-id")
    if raw is None:
        return None, None
    try:
        return raw, int(raw)
    except ValueError:
        return raw, None


def _gate(state: SandboxState, request: Request) -> tuple[RestContext, RateDecision]:
    """Auth → company header → installation → rate limit, in Procore's order of checks."""
    token = state.check_token(request.headers.get("authorization"))
    client = state.clients[token.client_id]
    raw, company_id = _company_header(request)
    if raw is None and (request.method, request.url.path) not in COMPANY_HEADER_EXEMPT:
        raise ProcoreError(400, "Missing Procore-Company-Id header!", reason="bad_request")
    if raw is not None and company_id is None:
        raise ProcoreError(400, "Procore-Company-Id header must be an integer", reason="bad_request")
    if company_id is not None:
        state.require_access(token, company_id)
    decision = state.limiter.hit(state.rules.rate_key(client.client_id, token.user_id, company_id))
    if not decision.allowed:
        raise ProcoreError(
            429,
            OLD_429_MESSAGE,
            reason="rate_limited",
            headers={**decision.headers(), "Retry-After": str(decision.retry_after)},
        )
    return RestContext(token, client, company_id, state.actor_for_token(token)), decision


async def _pre_fault(fault: Fault) -> Response | None:
    """Faults that act before the request is handled; None means: go on and handle it."""
    if fault.kind == "latency":
        await asyncio.sleep(fault.latency_ms / 1000)
        return None
    if fault.kind == "timeout":
        await asyncio.sleep(fault.timeout_s)
        return JSONResponse({"code": 504, "message": "Gateway Timeout"}, status_code=504)
    if fault.kind == "drop":
        return _dropped_response()
    if fault.kind == "status":
        headers = {"Retry-After": str(fault.retry_after)} if fault.status in (429, 503) else {}
        return JSONResponse(
            {"code": fault.status, "message": f"Sandbox injected error {fault.status}", "error": None},
            status_code=fault.status,
            headers=headers,
        )
    return None


def create_app(state: SandboxState | None = None) -> FastAPI:  # noqa: C901 - wiring only: one branch per route group and fault hook
    """Build the sandbox app around `state` (a fresh one if None)."""
    sandbox = state or SandboxState()
    dispatcher = WebhookDispatcher(sandbox)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sandbox.listeners.append(dispatcher.on_change)
        try:
            yield
        finally:
            sandbox.listeners.remove(dispatcher.on_change)
            await dispatcher.aclose()

    app = FastAPI(title="Procore API sandbox", lifespan=lifespan, docs_url="/_sandbox/docs", openapi_url=None)
    app.state.sandbox = sandbox
    app.state.dispatcher = dispatcher
    for router in (
        routes_oauth.router,
        routes_reference.router,
        routes_daily_logs.router,
        routes_bulk.router,
        routes_webhooks.router,
        control_rules.router,
        project_directory.router,
        control.router,
        control_strict_rules.router,
    ):
        app.include_router(router)

    @app.exception_handler(ProcoreError)
    async def on_procore_error(_: Request, exc: ProcoreError) -> Response:
        return error_response(exc)

    @app.exception_handler(FilterError)
    async def on_filter_error(_: Request, exc: FilterError) -> Response:
        return error_response(ProcoreError(400, str(exc), reason="bad_request"))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(ProcoreError(400, f"Invalid request: {problems}", reason="bad_request"))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return error_response(ProcoreError(exc.status_code, str(exc.detail)))

    @app.middleware("http")
    async def pipeline(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path.startswith("/_sandbox"):
            return await call_next(request)
        started = time.perf_counter()
        raw_body = await request.body()
        raw_company, company_id = _company_header(request)
        entry: dict[str, Any] = {
            "seq": sandbox.next_request_seq(),
            "timestamp": time.time(),
            "method": request.method,
            "path": path,
            "query": request.url.query,
            "query_params": {k: request.query_params.getlist(k) for k in request.query_params},
            "headers": {
                "procore-company-id": raw_company,
                "authorization": "authorization" in request.headers,
                "content-type": request.headers.get("content-type"),
                "user-agent": request.headers.get("user-agent"),
            },
            "company_id": company_id,
            "client_id": None,
            "body": _log_body(raw_body, request.headers.get("content-type", "")),
            "status": None,
            "fault": None,
            "outcome": "answered",
        }
        sandbox.request_log.append(entry)
        try:
            response = await _handle(request, call_next, entry, company_id)
        finally:
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return response

    async def _handle(
        request: Request,
        call_next: Callable[[Request], Awaitable[Response]],
        entry: dict[str, Any],
        company_id: int | None,
    ) -> Response:
        fault = sandbox.faults.pick(request.method, request.url.path, company_id)
        if fault is not None:
            entry["fault"] = fault.id
            early = await _pre_fault(fault)
            if early is not None:
                dropped = fault.kind == "drop"
                entry["status"] = None if dropped else early.status_code
                entry["outcome"] = "dropped" if dropped else "fault"
                return early
        decision: RateDecision | None = None
        if request.url.path.startswith("/rest/"):
            try:
                ctx, decision = _gate(sandbox, request)
            except ProcoreError as err:
                entry["status"] = err.status
                return error_response(err)
            request.state.rest = ctx
            entry["client_id"] = ctx.client.client_id
        response = await call_next(request)
        if decision is not None:
            response.headers.update(decision.headers())
        if fault is not None and fault.kind == "fail_after_commit":
            entry["committed_status"] = response.status_code
            if fault.after_commit == "drop":
                entry["outcome"] = "dropped"
                return _dropped_response()
            entry["status"] = fault.status
            entry["outcome"] = "fault"
            return JSONResponse(
                {"code": fault.status, "message": f"Sandbox injected error {fault.status}", "error": None},
                status_code=fault.status,
            )
        entry["status"] = response.status_code
        return response

    return app
