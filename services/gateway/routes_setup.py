"""Setup's routes: the account's setup, the Procore connection (OAuth authorize and callback, service account,
disconnect, unbind) and Procore's webhook deliveries.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from services.gateway import handlers, mapping_handlers
from services.gateway.adapters.mapping_internal import MappingRefused, MappingUnavailable
from services.gateway.config import CALLBACK_PATH, GatewaySettings
from services.gateway.dependencies import RATE_LIMITED, Bus, Internal, Reads, Settings, Who, limited
from services.gateway.mapping_rules import OAUTH_COOKIE
from services.gateway.rate_limits import CommandGroup, CommandRateLimits
from services.gateway.request_bodies import ConnectBody, SetupBody
from services.gateway.schemas import (
    Accepted,
    AuthorizeUrl,
    ProcoreConnection,
    Setup,
)
from shared.events import ProcoreId

router = APIRouter()


@router.get("/api/setup", tags=["setup"])
async def get_setup(who: Who, reads: Reads) -> Setup:
    """The account's Procore setup: company, enabled modules, two-way option, what is still `missing`, and how many
    `manual_mappings` turning two-way on would replace."""
    return await handlers.current_setup(reads, who)


@router.put(
    "/api/setup",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SETUP)],
    responses=RATE_LIMITED,
)
async def put_setup(body: SetupBody, who: Who, bus: Bus) -> Accepted:
    """Configure the Procore company, enabled modules, two-way option and auto-publish (procore.setup)."""
    return await handlers.configure_setup(
        bus, who, body.procore_company_id, body.enabled_modules, body.two_way, body.auto_publish
    )


@router.get("/api/procore/connection", tags=["setup"])
async def get_procore_connection(who: Who, reads: Reads) -> ProcoreConnection:
    """The account's Procore connection (status, grant), the companies bound to it, and the setup (procore.setup)."""
    return await mapping_handlers.procore_connection(reads, who)


@router.get(
    "/api/procore/authorize", tags=["setup"], dependencies=[limited(CommandGroup.CONNECT)], responses=RATE_LIMITED
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


WEBHOOK_PATH = "/webhooks/procore"


WEBHOOK_MAX_BYTES = 64 * 1024
"""A Procore event is well under 2 KB; anything far larger is not one (refused before it is read)."""


@router.post(WEBHOOK_PATH, tags=["procore"], responses={401: {}, 413: {}, 429: {}, 503: {}})
async def procore_webhook(request: Request, internal: Internal) -> JSONResponse:
    """A Procore webhook delivery (public: Procore calls it). Authenticated by the hook's secret in the
    Authorization header, checked by the mapping service (it registered the hook and keeps only the secret's
    digest); deduplicated there by the event's id. Rate-limited per hook; 503 makes Procore deliver again."""
    authorization = request.headers.get("authorization")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > WEBHOOK_MAX_BYTES:
        return JSONResponse({"message": f"too large: at most {WEBHOOK_MAX_BYTES} bytes"}, status_code=413)
    limits: CommandRateLimits = request.app.state.rate_limits
    await limits.hit(mapping_handlers.webhook_sender(authorization), CommandGroup.WEBHOOK)
    raw = await request.body()
    if len(raw) > WEBHOOK_MAX_BYTES:
        return JSONResponse({"message": f"too large: at most {WEBHOOK_MAX_BYTES} bytes"}, status_code=413)
    try:
        outcome = await mapping_handlers.take_webhook(internal, authorization, raw)
    except MappingRefused as refused:
        return JSONResponse({"message": str(refused)}, status_code=refused.status)
    except MappingUnavailable:
        return JSONResponse({"message": "try again later"}, status_code=503, headers={"Retry-After": "5"})
    return JSONResponse({"outcome": outcome})


@router.post(
    "/api/procore/connection",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.CONNECT)],
    responses=RATE_LIMITED,
)
async def post_connection(body: ConnectBody, who: Who, internal: Internal) -> Accepted:
    """Connect with your company's own service account (procore.setup): its credentials reach only your companies,
    which proves them. For a Procore user's consent use /api/procore/authorize."""
    secret = body.client_secret.get_secret_value()
    return await mapping_handlers.connect_service_account(
        internal, who, body.client_id, secret, body.procore_company_id
    )


@router.delete(
    "/api/procore/connection",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SETUP)],
    responses=RATE_LIMITED,
)
async def delete_connection(who: Who, bus: Bus) -> Accepted:
    """Disconnect (procore.setup): the tokens are revoked and forgotten; the companies stay bound to the account."""
    return await mapping_handlers.disconnect(bus, who)


@router.delete(
    "/api/procore/companies/{procore_company_id}",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SETUP)],
    responses=RATE_LIMITED,
)
async def delete_company(procore_company_id: ProcoreId, who: Who, bus: Bus) -> Accepted:
    """Unbind a Procore company from the account (procore.setup); another account may then prove and bind it."""
    return await mapping_handlers.unbind(bus, who, procore_company_id)
