"""Control API under /_sandbox (not Procore; no auth): seed, configure, inject faults, inspect."""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from sandbox.procore import serializers as ser
from sandbox.procore.faults import AfterCommitMode, FaultKind
from sandbox.procore.http_util import read_body, sandbox_state
from sandbox.procore.ratelimit import RateLimitConfig
from sandbox.procore.seed import CompanySeed, seed_company
from sandbox.procore.state import (
    RECORD_KINDS,
    AnyRecord,
    ManpowerLog,
    ProcoreError,
    QuantityLog,
    RecordKind,
    SandboxState,
    TimecardEntry,
    User,
    fmt_ts,
)

router = APIRouter(prefix="/_sandbox")


class ClientIn(BaseModel):
    client_id: str | None = None
    client_secret: str | None = None
    company_ids: list[int] = Field(default_factory=list)
    name: str = ""


class UserIn(BaseModel):
    login: str = Field(min_length=1, max_length=200)
    name: str = ""
    company_ids: list[int] = Field(default_factory=list)


class SettingsIn(BaseModel):
    token_lifetime_s: int | None = Field(default=None, ge=0)
    rate_limit_hourly: int | None = Field(default=None, ge=0)
    rate_limit_spike: int | None = Field(default=None, ge=0)
    rate_limit_time_scale: float | None = Field(default=None, gt=0)
    per_page_max: int | None = Field(default=None, ge=1)
    today: date | None = None
    clear_today: bool = False
    duplicate_origin_status: Literal[409, 422] | None = None
    webhook_max_attempts: int | None = Field(default=None, ge=1, le=20)
    webhook_retry_base_s: float | None = Field(default=None, ge=0)
    webhook_timeout_s: float | None = Field(default=None, gt=0)
    fault_seed: int | None = None


class FaultIn(BaseModel):
    path: str = "*"
    method: str = "*"
    kind: FaultKind = "status"
    status: int = Field(default=500, ge=400, le=599)
    times: int | None = Field(default=1, ge=1)
    probability: float = Field(default=1.0, ge=0, le=1)
    latency_ms: int = Field(default=0, ge=0)
    timeout_s: float = Field(default=30.0, ge=0)
    retry_after: int = Field(default=1, ge=0)
    after_commit: AfterCommitMode = "status"
    company_id: int | None = None


def _settings_json(state: SandboxState) -> dict[str, Any]:
    s, rl = state.settings, state.limiter.config
    return {
        "token_lifetime_s": s.token_lifetime_s,
        "rate_limit_hourly": rl.hourly,
        "rate_limit_spike": rl.spike,
        "rate_limit_time_scale": rl.time_scale,
        "per_page_max": s.per_page_max,
        "today": s.today.isoformat() if s.today else None,
        "duplicate_origin_status": s.duplicate_origin_status,
        "webhook_max_attempts": s.webhook_max_attempts,
        "webhook_retry_base_s": s.webhook_retry_base_s,
        "webhook_timeout_s": s.webhook_timeout_s,
    }


def _kind(kind: str) -> RecordKind:
    for known in RECORD_KINDS:
        if known == kind:
            return known
    raise ProcoreError(404, f"Unknown record kind {kind!r}; use one of {', '.join(RECORD_KINDS)}")


def record_json(state: SandboxState, rec: AnyRecord) -> dict[str, Any]:
    """Procore shape plus sandbox bookkeeping (company/project ids, deleted flag, who wrote it)."""
    if isinstance(rec, ManpowerLog):
        body = ser.manpower_log(state, rec)
    elif isinstance(rec, QuantityLog):
        body = ser.quantity_log(state, rec)
    else:
        assert isinstance(rec, TimecardEntry)
        body = ser.company_timecard_entry(state, rec)
    return body | {
        "company_id": rec.company_id,
        "project_id": rec.project_id,
        "deleted": rec.deleted_at is not None,
        "deleted_at": fmt_ts(rec.deleted_at),
        "created_by_client_id": rec.created_by.client_id,
    }


@router.get("/health")
async def health() -> Response:
    """Liveness for compose healthchecks and `make run`."""
    return JSONResponse({"status": "ok"})


@router.post("/reset")
async def reset(request: Request) -> Response:
    """Back to the start state (default client only, no companies)."""
    sandbox_state(request).reset()
    return JSONResponse({"ok": True})


@router.post("/companies")
async def create_company(request: Request, seed: CompanySeed) -> Response:
    """Seed a company (or extend an existing one); returns all created ids."""
    return JSONResponse(seed_company(sandbox_state(request), seed), status_code=201)


@router.get("/companies")
async def list_companies(request: Request) -> Response:
    """Companies with entity counts."""
    state = sandbox_state(request)
    return JSONResponse(
        [
            {
                "id": c.id,
                "name": c.name,
                "projects": [
                    {"id": p.id, "name": p.name, "cost_codes": len(p.cost_codes)} for p in c.projects.values()
                ],
                "vendors": len(c.vendors),
                "people": len(c.people),
                "work_classifications": len(c.work_classifications),
                "timecard_time_types": len(c.time_types),
            }
            for c in state.companies.values()
        ]
    )


@router.post("/clients")
async def create_client(request: Request, body: ClientIn) -> Response:
    """Register (or update) an OAuth client and the companies it is installed in."""
    state = sandbox_state(request)
    client_id = body.client_id or f"client-{secrets.token_hex(6)}"
    secret = body.client_secret or secrets.token_urlsafe(18)
    client = state.register_client(client_id, secret, body.company_ids, body.name)
    return JSONResponse(
        {
            "client_id": client.client_id,
            "client_secret": client.secret,
            "company_ids": sorted(client.company_ids),
            "user_id": client.user_id,
        },
        status_code=201,
    )


@router.post("/users")
async def create_user(request: Request, body: UserIn) -> Response:
    """Register a Procore user (or add companies to one): the companies they can act for when they consent."""
    user = sandbox_state(request).register_user(body.login, body.name, body.company_ids)
    return JSONResponse(_user_json(user), status_code=201)


@router.get("/users")
async def list_users(request: Request) -> Response:
    """Users and their companies."""
    return JSONResponse([_user_json(u) for u in sandbox_state(request).users.values()])


def _user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "login": user.login, "name": user.name, "company_ids": sorted(user.company_ids)}


@router.post("/tokens/expire")
async def expire_tokens(request: Request) -> Response:
    """Expire every issued access token now (refresh tokens stay usable)."""
    state = sandbox_state(request)
    now = state.wall()
    for token in state.tokens.values():
        token.expires_at = min(token.expires_at, now)
    return JSONResponse({"expired": len(state.tokens)})


class RevokeIn(BaseModel):
    client_id: str | None = None
    refresh_tokens: bool = False


@router.post("/tokens/revoke")
async def revoke_tokens(request: Request, body: RevokeIn) -> Response:
    """Revoke every issued access token (of `client_id`), and their refresh tokens if asked."""
    revoked = sandbox_state(request).revoke_all(body.client_id, refresh_tokens=body.refresh_tokens)
    return JSONResponse({"revoked": revoked})


@router.get("/settings")
async def get_settings(request: Request) -> Response:
    """Current settings."""
    return JSONResponse(_settings_json(sandbox_state(request)))


@router.put("/settings")
async def put_settings(request: Request, body: SettingsIn) -> Response:
    """Change settings; omitted fields keep their value. Rate-limit changes restart all windows."""
    state = sandbox_state(request)
    s = state.settings
    if body.token_lifetime_s is not None:
        s.token_lifetime_s = body.token_lifetime_s
    if body.per_page_max is not None:
        s.per_page_max = body.per_page_max
    if body.today is not None:
        s.today = body.today
    if body.clear_today:
        s.today = None
    if body.duplicate_origin_status is not None:
        s.duplicate_origin_status = body.duplicate_origin_status
    if body.webhook_max_attempts is not None:
        s.webhook_max_attempts = body.webhook_max_attempts
    if body.webhook_retry_base_s is not None:
        s.webhook_retry_base_s = body.webhook_retry_base_s
    if body.webhook_timeout_s is not None:
        s.webhook_timeout_s = body.webhook_timeout_s
    if body.fault_seed is not None:
        state.faults.rng.seed(body.fault_seed)
    rl = state.limiter.config
    if any(v is not None for v in (body.rate_limit_hourly, body.rate_limit_spike, body.rate_limit_time_scale)):
        state.limiter.reconfigure(
            RateLimitConfig(
                hourly=body.rate_limit_hourly if body.rate_limit_hourly is not None else rl.hourly,
                spike=body.rate_limit_spike if body.rate_limit_spike is not None else rl.spike,
                time_scale=body.rate_limit_time_scale if body.rate_limit_time_scale is not None else rl.time_scale,
            )
        )
    return JSONResponse(_settings_json(state))


@router.post("/faults")
async def add_fault(request: Request, body: FaultIn) -> Response:
    """Inject a fault for requests whose path matches the glob `path` (and `method`)."""
    fault = sandbox_state(request).faults.add(**body.model_dump())
    return JSONResponse(fault.to_json(), status_code=201)


@router.get("/faults")
async def list_faults(request: Request) -> Response:
    """Faults with remaining `times` and `hits`."""
    return JSONResponse([f.to_json() for f in sandbox_state(request).faults.faults])


@router.delete("/faults")
async def clear_faults(request: Request) -> Response:
    """Remove all faults."""
    sandbox_state(request).faults.clear()
    return JSONResponse({"ok": True})


@router.patch("/records/{kind}/{record_id}")
async def edit_record(request: Request, kind: str, record_id: int) -> Response:
    """Edit a record as a human Procore user: bumps updated_at, fires webhooks. Body: the fields to set."""
    state = sandbox_state(request)
    fields = await read_body(request)
    if not isinstance(fields, dict):
        raise ProcoreError(400, "Body must be a JSON object of fields to set")
    rec = state.user_edit(_kind(kind), record_id, fields)
    return JSONResponse(record_json(state, rec))


@router.delete("/records/{kind}/{record_id}")
async def delete_record(request: Request, kind: str, record_id: int) -> Response:
    """Delete a record as a human Procore user."""
    state = sandbox_state(request)
    return JSONResponse(record_json(state, state.user_delete(_kind(kind), record_id)))


@router.get("/records/{kind}")
async def list_records(request: Request, kind: str) -> Response:
    """Everything stored of a kind, deleted ones included (flagged), any date."""
    state = sandbox_state(request)
    company_id = request.query_params.get("company_id")
    project_id = request.query_params.get("project_id")
    items = [
        r
        for r in state.records[_kind(kind)].values()
        if (company_id is None or str(r.company_id) == company_id)
        and (project_id is None or str(r.project_id) == project_id)
    ]
    return JSONResponse([record_json(state, r) for r in sorted(items, key=lambda r: r.id)])


@router.get("/requests")
async def list_requests(request: Request) -> Response:
    """Request log; filters: company_id, path (substring), method, since (seq, exclusive)."""
    state = sandbox_state(request)
    q = request.query_params
    entries = list(state.request_log)
    if q.get("company_id"):
        entries = [e for e in entries if str(e["company_id"]) == q["company_id"]]
    if q.get("path"):
        entries = [e for e in entries if q["path"] in e["path"]]
    if q.get("method"):
        entries = [e for e in entries if e["method"] == q["method"].upper()]
    if q.get("since"):
        entries = [e for e in entries if e["seq"] > int(q["since"])]
    return JSONResponse(entries)


@router.delete("/requests")
async def clear_requests(request: Request) -> Response:
    """Clear the request log."""
    sandbox_state(request).request_log.clear()
    return JSONResponse({"ok": True})


@router.get("/webhook-deliveries")
async def list_deliveries(request: Request) -> Response:
    """Webhook deliveries with every attempt."""
    return JSONResponse(sandbox_state(request).deliveries)


@router.delete("/webhook-deliveries")
async def clear_deliveries(request: Request) -> Response:
    """Clear the delivery record."""
    sandbox_state(request).deliveries.clear()
    return JSONResponse({"ok": True})
