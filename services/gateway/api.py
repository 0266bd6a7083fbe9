"""HTTP routes: thin adapters from requests to `handlers`, plus auth and error mapping.

Routes read their dependencies (pool, command bus, settings) from `app.state`, which the
lifespan in `bootstrap` fills.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from html import escape
from typing import Annotated, Any, Literal
from urllib.parse import urlencode
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from services.gateway import domain, handlers, mapping_handlers
from services.gateway.adapters.mapping_internal import MappingInternal, MappingRefused, MappingUnavailable
from services.gateway.adapters.signing_keys import KeysUnavailable
from services.gateway.auth import TokenVerifier
from services.gateway.config import CALLBACK_PATH, GatewaySettings
from services.gateway.domain import (
    InvalidInput,
    MissingPermission,
    NotAuthenticated,
    NotFound,
    Permission,
    Principal,
)
from services.gateway.mapping_rules import OAUTH_COOKIE, Conflict
from services.gateway.rate_limits import CommandGroup, CommandRateLimits, RateLimited
from services.gateway.views import (
    Accepted,
    AuthorizeUrl,
    CellDetails,
    CommandOutcome,
    Connection,
    Dashboard,
    EntryDetail,
    EntryStatus,
    MappingOverview,
    MappingTab,
    Me,
    Setup,
    Token,
)
from shared.events import Id, Module, ProcoreEntity, ProcoreId, PublishAction, PublishScope
from shared.readiness import Readiness, health_body

# --- dependencies ----------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    description=(
        "A JWT from MobiClocks core (RS256 or EdDSA, its key named by kid in core's key set) with iss, aud, exp, sub, "
        "account_id and permissions. Development only: HS256 development tokens (dev login)."
    ),
)


def settings_of(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The signed-in user from the bearer token; 401 without a valid one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated("sign in: send Authorization: Bearer <token>")
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.principal(credentials.credentials)


async def read_connection(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a read-only snapshot transaction: the gateway never writes the read model."""
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        yield conn


def command_bus(request: Request) -> handlers.CommandBus:
    bus: handlers.CommandBus = request.app.state.bus
    return bus


Who = Annotated[Principal, Depends(principal)]
Settings = Annotated[GatewaySettings, Depends(settings_of)]
Conn = Annotated[asyncpg.Connection, Depends(read_connection)]
Bus = Annotated[handlers.CommandBus, Depends(command_bus)]


def limited(group: CommandGroup) -> Any:
    """A route dependency: the caller's account may send only so many commands of `group` (429 past that)."""

    async def count(request: Request, who: Who) -> None:
        limits: CommandRateLimits = request.app.state.rate_limits
        await limits.hit(who.account_id, group)

    return Depends(count)


_RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many commands of this kind from the account (Retry-After says when to try again)"}
}


# --- request bodies --------------------------------------------------------------------


class PublishBody(BaseModel):
    """What to publish. An account_id sent along is ignored: commands act on the token's account."""

    model_config = ConfigDict(extra="ignore")

    action: PublishAction
    scope: PublishScope


class SetupBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    procore_company_id: ProcoreId | None
    enabled_modules: list[Module]
    two_way: bool = False


class MappingBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    procore_id: ProcoreId | None = Field(description="The Procore entity; null clears the mapping")
    procore_project_id: ProcoreId | None = Field(default=None, description="Cost codes are mapped per Procore project")


class DevLoginBody(BaseModel):
    account_id: Id
    user_id: Id
    permissions: list[Permission] = Field(default_factory=lambda: list(Permission))


# --- routes ----------------------------------------------------------------------------

router = APIRouter()
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "Two-way account: mappings come from linked ids"}}


async def _readiness(request: Request) -> JSONResponse:
    checks = {"database": False, "broker": False}
    pool: asyncpg.Pool | None = getattr(request.app.state, "pool", None)
    if pool is not None:
        try:
            async with asyncio.timeout(3.0), pool.acquire() as conn:
                checks["database"] = await conn.fetchval("SELECT true") is True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            pass
    broker = getattr(request.app.state, "broker", None)
    if broker is not None:
        checks["broker"] = await broker.ping(timeout=3.0)
    readiness: Readiness | None = getattr(request.app.state, "readiness", None)
    code, body = health_body(checks, readiness.problems() if readiness is not None else {})
    return JSONResponse(body, status_code=code)


@router.get("/health", tags=["ops"])
async def health(request: Request) -> JSONResponse:
    """Readiness, as /health/ready (health checks of the supervisor and compose use this path)."""
    return await _readiness(request)


@router.get("/health/ready", tags=["ops"])
async def health_ready(request: Request) -> JSONResponse:
    """200 when the database and the broker answer and every registered component is healthy; 503 naming what
    is not."""
    return await _readiness(request)


@router.get("/health/live", tags=["ops"])
async def health_live() -> dict[str, str]:
    """200 while the process and its event loop answer."""
    return {"status": "alive"}


@router.get("/api/me", tags=["auth"])
async def me(who: Who) -> Me:
    """Who the token belongs to: user, account and permissions."""
    return Me(user_id=who.user_id, account_id=who.account_id, permissions=sorted(who.permissions))


@router.get("/api/setup", tags=["setup"])
async def get_setup(who: Who, conn: Conn) -> Setup:
    """The account's Procore setup: company, enabled modules, two-way option."""
    return await handlers.current_setup(conn, who)


@router.get("/api/modules/{module}/dashboard", tags=["dashboard"])
async def get_dashboard(
    module: Module,
    who: Who,
    conn: Conn,
    week_start: Annotated[date | None, Query(description="First day shown; default: this week's Monday")] = None,
    status: Annotated[list[EntryStatus] | None, Query(description="Only entries with these statuses")] = None,
) -> Dashboard:
    """Job sites by the 7 days from week_start: numbers, status and allowed actions per cell."""
    start = week_start or domain.week_of(datetime.now(UTC).date())
    return await handlers.dashboard(conn, who, module, start, status or [])


@router.get("/api/modules/{module}/cells/{job_site_id}/{work_date}", tags=["dashboard"])
async def get_cell(module: Module, job_site_id: str, work_date: date, who: Who, conn: Conn) -> CellDetails:
    """The details table of one job site on one day, with the Errors panel."""
    return await handlers.cell_details(conn, who, module, job_site_id, work_date)


@router.get("/api/entries/{entry_id}", tags=["dashboard"])
async def get_entry(entry_id: UUID, who: Who, conn: Conn) -> EntryDetail:
    """One entry, its details row and its publish history."""
    return await handlers.entry_detail(conn, who, entry_id)


@router.post(
    "/api/modules/{module}/publish",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.PUBLISH)],
    responses=_RATE_LIMITED,
)
async def publish(module: Module, body: PublishBody, who: Who, conn: Conn, bus: Bus) -> Accepted:
    """Publish, republish or force publish a cell, a list of entries or a date range (procore.publish)."""
    return await handlers.request_publish(conn, bus, who, module, body.action, body.scope)


@router.put(
    "/api/setup",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SETUP)],
    responses=_RATE_LIMITED,
)
async def put_setup(body: SetupBody, who: Who, bus: Bus) -> Accepted:
    """Configure the Procore company, enabled modules and two-way option (procore.setup)."""
    return await handlers.configure_setup(bus, who, body.procore_company_id, body.enabled_modules, body.two_way)


@router.put(
    "/api/mappings/{entity}/{mobiclocks_id}",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.MAPPING)],
    responses={**_CONFLICT, **_RATE_LIMITED},
)
async def put_mapping(
    entity: ProcoreEntity,
    mobiclocks_id: Annotated[str, Path(min_length=1, max_length=64)],
    body: MappingBody,
    who: Who,
    conn: Conn,
    bus: Bus,
    settings: Settings,
) -> Accepted:
    """Map a MobiClocks entity to a Procore entity, or clear it with null (procore.mapping); 409 in two-way accounts."""
    two_way = await mapping_handlers.is_two_way(conn, settings.mapping_schema, who.account_id)
    return await handlers.set_mapping(
        bus, who, entity, mobiclocks_id, body.procore_id, body.procore_project_id, two_way=two_way
    )


# --- setup: the Procore connection -----------------------------------------------------


def mapping_internal(request: Request) -> MappingInternal:
    internal: MappingInternal = request.app.state.mapping_internal
    return internal


Internal = Annotated[MappingInternal, Depends(mapping_internal)]


@router.get("/api/procore/connection", tags=["setup"])
async def get_connection(who: Who, conn: Conn, settings: Settings) -> Connection:
    """The account's Procore connection (status, grant), the companies bound to it, and the setup (procore.setup)."""
    return await mapping_handlers.connection(conn, settings.mapping_schema, who)


@router.get(
    "/api/procore/authorize", tags=["setup"], dependencies=[limited(CommandGroup.CONNECT)], responses=_RATE_LIMITED
)
async def get_authorize_url(who: Who, internal: Internal, settings: Settings, response: Response) -> AuthorizeUrl:
    """Procore's OAuth authorize URL: open it in this browser (procore.setup). It comes back to
    /oauth/procore/callback, which completes it only in this browser (an HttpOnly cookie), once, in time."""
    started = await mapping_handlers.authorize(internal, who, settings.oauth_redirect_uri)
    response.set_cookie(
        OAUTH_COOKIE,
        started.browser_nonce,
        max_age=started.expires_in,
        path=CALLBACK_PATH,
        secure=settings.oauth_cookie_secure,
        httponly=True,
        samesite="lax",  # Procore's redirect back is a top-level cross-site GET: Lax sends it, Strict would not
    )
    response.headers["Cache-Control"] = "no-store"
    return AuthorizeUrl(authorize_url=started.authorize_url, expires_in=started.expires_in)


def _back_to_setup(settings: GatewaySettings, outcome: dict[str, str]) -> RedirectResponse:
    response = RedirectResponse(f"/#setup?{urlencode(outcome)}", status_code=303)
    response.delete_cookie(
        OAUTH_COOKIE, path=CALLBACK_PATH, secure=settings.oauth_cookie_secure, httponly=True, samesite="lax"
    )
    # The callback URL carries the code and state: no cache keeps it, no Referer repeats it.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get(CALLBACK_PATH, tags=["setup"], response_class=RedirectResponse, status_code=303)
async def oauth_callback(
    request: Request,
    internal: Internal,
    settings: Settings,
    state: Annotated[str | None, Query(max_length=1024)] = None,
    code: Annotated[str | None, Query(max_length=1024)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    error_description: Annotated[str | None, Query(max_length=1000)] = None,
) -> RedirectResponse:
    """Procore sends the browser back here. Only the browser that started the flow completes it (its cookie holds
    the nonce the state was made for); each state works once and expires. Back to Setup either way."""
    if error or not code or not state:
        reason = error_description or error or "Procore sent no authorization code"
        return _back_to_setup(settings, {"connect_error": reason})
    nonce = request.cookies.get(OAUTH_COOKIE, "")
    try:
        command_id = await mapping_handlers.complete_connection(internal, state, nonce, code)
    except (MappingRefused, MappingUnavailable) as problem:
        return _back_to_setup(settings, {"connect_error": str(problem)})
    return _back_to_setup(settings, {"connect_command": str(command_id)})


class ConnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grant: Literal["client_credentials"] = Field(
        description="Your company's own Procore service account (never the app's shared credentials)"
    )
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    client_secret: Annotated[SecretStr, Field(min_length=1, max_length=1024)]


@router.post(
    "/api/procore/connection",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.CONNECT)],
    responses=_RATE_LIMITED,
)
async def post_connection(body: ConnectBody, who: Who, internal: Internal) -> Accepted:
    """Connect with your company's own service account (procore.setup): its credentials reach only your companies,
    which proves them. For a Procore user's consent use /api/procore/authorize."""
    secret = body.client_secret.get_secret_value()
    return await mapping_handlers.connect_service_account(internal, who, body.client_id, secret)


@router.delete(
    "/api/procore/connection",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SETUP)],
    responses=_RATE_LIMITED,
)
async def delete_connection(who: Who, bus: Bus) -> Accepted:
    """Disconnect (procore.setup): the tokens are revoked and forgotten; the companies stay bound to the account."""
    return await mapping_handlers.disconnect(bus, who)


@router.delete(
    "/api/procore/companies/{procore_company_id}",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SETUP)],
    responses=_RATE_LIMITED,
)
async def delete_company(procore_company_id: ProcoreId, who: Who, bus: Bus) -> Accepted:
    """Unbind a Procore company from the account (procore.setup); another account may then prove and bind it."""
    return await mapping_handlers.unbind(bus, who, procore_company_id)


# --- data mapping ----------------------------------------------------------------------


@router.get("/api/mapping", tags=["mapping"])
async def get_mapping_overview(who: Who, conn: Conn, settings: Settings) -> MappingOverview:
    """The Data mapping tabs the enabled modules need, and the mapped projects (procore.mapping)."""
    return await mapping_handlers.overview(conn, settings.mapping_schema, who)


@router.get("/api/mapping/{entity}", tags=["mapping"])
async def get_mapping_tab(
    entity: ProcoreEntity,
    who: Who,
    conn: Conn,
    settings: Settings,
    procore_project_id: Annotated[
        ProcoreId | None, Query(description="Cost codes: the mapped Procore project (default: the first)")
    ] = None,
) -> MappingTab:
    """One tab's rows, their mappings, the synced Procore entities, last sync and auto-map report."""
    return await mapping_handlers.mapping_tab(conn, settings.mapping_schema, who, entity, procore_project_id)


@router.post(
    "/api/mapping/{entity}/sync",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SYNC)],
    responses=_RATE_LIMITED,
)
async def post_sync(entity: ProcoreEntity, who: Who, bus: Bus) -> Accepted:
    """Pull the whole Procore list of this tab (procore.mapping); follow it with GET /api/commands/{id}."""
    return await mapping_handlers.sync(bus, who, entity)


class AutoMapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overwrite_manual: bool = Field(default=False, description="Also replace mappings made by hand")


@router.post(
    "/api/mapping/{entity}/auto-map",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SYNC)],
    responses={**_CONFLICT, **_RATE_LIMITED},
)
async def post_auto_map(
    entity: ProcoreEntity, who: Who, conn: Conn, bus: Bus, settings: Settings, body: AutoMapBody | None = None
) -> Accepted:
    """Map rows whose Number equals a Procore entity's number (procore.mapping); 409 in two-way accounts."""
    two_way = await mapping_handlers.is_two_way(conn, settings.mapping_schema, who.account_id)
    overwrite = body.overwrite_manual if body is not None else False
    return await mapping_handlers.auto_map(bus, who, entity, overwrite, two_way)


@router.get("/api/commands/{command_id}", tags=["commands"])
async def get_command(command_id: UUID, who: Who, conn: Conn, settings: Settings) -> CommandOutcome:
    """What became of a setup or mapping command: pending, done, rejected (why) or failed (Procore's message)."""
    return await mapping_handlers.command_outcome(conn, settings.mapping_schema, who, command_id)


# --- dev login (only registered when DEV_LOGIN=true) -----------------------------------

dev_router = APIRouter(tags=["dev"])


def _dev_token(request: Request, body: DevLoginBody) -> Token:
    settings = settings_of(request)
    # Registered only in development (the settings refuse DEV_LOGIN otherwise); checked again where tokens are made.
    if not (settings.development and settings.dev_login and settings.jwt_secret is not None):
        raise NotFound("dev login is off")
    who = Principal(body.user_id, body.account_id, frozenset(p.value for p in body.permissions))
    token = domain.issue_dev_token(who, settings.jwt_secret.get_secret_value(), settings.jwt_ttl_s)
    return Token(access_token=token, expires_in=settings.jwt_ttl_s)


@dev_router.post("/api/dev/login")
async def dev_login(request: Request, body: DevLoginBody) -> Token:
    """Development only: a token for any account and user (all permissions unless listed)."""
    return _dev_token(request, body)


_DEV_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signing in…</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body>
<p>Development sign-in: account <b>{account}</b> as <b>{user}</b>…</p>
<div id="dev-login" data-token="{token}" data-next="{next}" hidden></div>
<script src="/static/dev-login.js"></script>
</body></html>
"""
"""No inline script (the Content-Security-Policy allows none): the token rides in a data attribute for
static/dev-login.js."""


@dev_router.get("/dev/login", response_class=HTMLResponse)
async def dev_login_page(
    request: Request,
    account_id: Annotated[str, Query(min_length=1, max_length=64)],
    user_id: Annotated[str, Query(min_length=1, max_length=64)] = "dev",
    permission: Annotated[list[Permission] | None, Query()] = None,
    screen: Annotated[Literal["", "mapping", "setup"], Query(description="Open this screen")] = "",
) -> HTMLResponse:
    """Development only: stores a token in the browser and opens the dashboard."""
    token = _dev_token(
        request,
        DevLoginBody(account_id=account_id, user_id=user_id, permissions=permission or list(Permission)),
    )
    page = _DEV_PAGE.format(
        account=escape(account_id),
        user=escape(user_id),
        token=escape(token.access_token, quote=True),
        next=escape(f"/#{screen}" if screen else "/", quote=True),
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


# --- errors ----------------------------------------------------------------------------


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    """'body.scope.work_date' → names the field; the 'body'/'query'/'path' prefix says where it was."""
    return ".".join(str(p) for p in loc if not str(p).startswith(("function-after", "tagged-union")))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotAuthenticated)
    async def on_not_authenticated(request: Request, error: NotAuthenticated) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(KeysUnavailable)
    async def on_keys_unavailable(request: Request, error: KeysUnavailable) -> JSONResponse:
        # Unavailable is not invalid: the token may be fine, it just cannot be checked right now.
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RateLimited)
    async def on_rate_limited(request: Request, error: RateLimited) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error), "retry_after_s": error.retry_after_s},
            status_code=429,
            headers={"Retry-After": str(error.retry_after_s)},
        )

    @app.exception_handler(MissingPermission)
    async def on_missing_permission(request: Request, error: MissingPermission) -> JSONResponse:
        return JSONResponse({"detail": str(error), "permission": error.permission.value}, status_code=403)

    @app.exception_handler(Conflict)
    async def on_conflict(request: Request, error: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(MappingRefused)
    async def on_mapping_refused(request: Request, error: MappingRefused) -> JSONResponse:
        # 403: a permission the mapping service checked again; otherwise the request cannot be done as asked.
        return JSONResponse({"detail": str(error)}, status_code=403 if error.status == 403 else 422)

    @app.exception_handler(MappingUnavailable)
    async def on_mapping_unavailable(request: Request, error: MappingUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(NotFound)
    async def on_not_found(request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(InvalidInput)
    async def on_invalid_input(request: Request, error: InvalidInput) -> JSONResponse:
        field = _where(error.field)
        return JSONResponse(
            {
                "detail": [{"loc": list(error.field), "msg": str(error), "type": "value_error"}],
                "message": f"{field}: {error}",
            },
            status_code=422,
        )

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in error.errors()  # 'input' and 'ctx' left out: they may echo secrets or be unserializable
        ]
        message = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors)
        return JSONResponse({"detail": errors, "message": message}, status_code=422)
