"""Development sign-in (registered only when DEV_LOGIN=true): a token for scripts, and a page that stores one in
the browser. No inline script (the Content-Security-Policy allows none): the page loads static/dev-login.js.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from services.gateway.config import GatewaySettings
from services.gateway.failures import NotFound
from services.gateway.schemas import Token
from services.gateway.tokens import Principal, issue_dev_token
from shared.events import Id, Permission


class DevLoginBody(BaseModel):
    account_id: Id
    user_id: Id
    permissions: list[Permission] = Field(default_factory=lambda: list(Permission))


router = APIRouter(tags=["dev"])


def _dev_token(request: Request, body: DevLoginBody) -> Token:
    settings: GatewaySettings = request.app.state.settings
    # Registered only in development (the settings refuse DEV_LOGIN otherwise); checked again where tokens are made.
    if not (settings.development and settings.dev_login and settings.jwt_secret is not None):
        raise NotFound("dev login is off")
    who = Principal(body.user_id, body.account_id, frozenset(p.value for p in body.permissions))
    token = issue_dev_token(who, settings.jwt_secret.get_secret_value(), settings.jwt_ttl_s)
    return Token(access_token=token, expires_in=settings.jwt_ttl_s)


@router.post("/api/dev/login")
async def dev_login(request: Request, body: DevLoginBody) -> Token:
    """Development only: a token for any account and user (all permissions unless listed)."""
    return _dev_token(request, body)


DEV_PAGE = """<!doctype html>
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


@router.get("/dev/login", response_class=HTMLResponse)
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
    page = DEV_PAGE.format(
        account=escape(account_id),
        user=escape(user_id),
        token=escape(token.access_token, quote=True),
        next=escape(f"/#{screen}" if screen else "/", quote=True),
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
