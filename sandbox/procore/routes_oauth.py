"""OAuth 2.0: token (client_credentials, authorization_code with PKCE, refresh_token), authorize (who consents),
info, revoke."""

from __future__ import annotations

import math
from html import escape
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sandbox.procore import company_rules
from sandbox.procore.http_util import read_body, sandbox_state
from sandbox.procore.state import ProcoreError, SandboxState, Token, User

router = APIRouter()


def _oauth_error(err: ProcoreError) -> JSONResponse:
    return JSONResponse(
        {"error": err.reason or "invalid_request", "error_description": err.message}, status_code=err.status
    )


def _token_body(token: Token) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": token.access_token,
        "token_type": "bearer",
        "expires_in": max(0, math.floor(token.expires_at - token.created_at)),
        "created_at": int(token.created_at),
    }
    if token.refresh_token:
        body["refresh_token"] = token.refresh_token
    return body


@router.post("/oauth/token")
async def token(request: Request) -> Response:
    """Issue an access token; JSON or form body."""
    state = sandbox_state(request)
    try:
        body = await read_body(request)
        if not isinstance(body, dict):
            raise ProcoreError(400, "Request body is required", reason="invalid_request")
        grant_type = body.get("grant_type")
        client = state.authenticate_client(body.get("client_id"), body.get("client_secret"))
        if grant_type == "client_credentials":
            issued = state.issue_token(client, "client_credentials", with_refresh=False)
        elif grant_type == "authorization_code":
            issued = state.redeem_auth_code(
                client, body.get("code"), body.get("redirect_uri"), body.get("code_verifier")
            )
        elif grant_type == "refresh_token":
            lose_answer = company_rules.loses_refresh_answer(state, body.get("refresh_token"))
            issued = state.refresh(client, body.get("refresh_token"))
            if lose_answer:  # rotated (the old refresh token is burnt), and the answer never arrives
                from sandbox.procore.app import _dropped_response  # the app imports this module

                return _dropped_response()
        else:
            raise ProcoreError(400, f"Unsupported grant_type {grant_type!r}", reason="unsupported_grant_type")
    except ProcoreError as err:
        return _oauth_error(err)
    return JSONResponse(_token_body(issued))


# What the authorize request carries through the sign-in page (form fields of the same names).
_AUTHORIZE_PARAMS = ("response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method")


def _authorize_request(params: Any) -> dict[str, str]:
    wanted = {name: params.get(name) for name in _AUTHORIZE_PARAMS}
    if wanted["response_type"] != "code" or not wanted["client_id"] or not wanted["redirect_uri"]:
        raise ProcoreError(400, "client_id, redirect_uri and response_type=code are required", reason="invalid_request")
    if not urlsplit(str(wanted["redirect_uri"])).scheme:
        raise ProcoreError(400, "redirect_uri must be absolute", reason="invalid_request")
    return {k: str(v) for k, v in wanted.items() if isinstance(v, str)}


def _back_to_client(request: dict[str, str], answer: dict[str, str], status: int = 302) -> RedirectResponse:
    if "state" in request:
        answer["state"] = request["state"]
    redirect_uri = request["redirect_uri"]
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(answer)}", status_code=status)


def _consent(state: SandboxState, request: dict[str, str], user: User, status: int = 302) -> RedirectResponse:
    code = state.issue_auth_code(
        request["client_id"],
        request["redirect_uri"],
        user.id,
        request.get("code_challenge"),
        request.get("code_challenge_method"),
    )
    return _back_to_client(request, {"code": code}, status)


_SIGN_IN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Procore sandbox: sign in</title></head>
<body style="font-family: system-ui, sans-serif; padding: 2rem; max-width: 40rem">
<h1>Procore sandbox</h1>
<p>An app asks to act for you in Procore. Sign in as one of the sandbox's users to allow it: it will reach
the companies that user is a member of.</p>
{users}
<form method="post" action="/oauth/authorize">{hidden}
<p><label>Or another login <input name="login" autocomplete="off"></label> <button>Allow</button></p></form>
<form method="post" action="/oauth/authorize">{hidden}<input type="hidden" name="deny" value="1">
<button>Deny</button></form>
</body></html>
"""


def _sign_in_page(state: SandboxState, request: dict[str, str], problem: str | None = None) -> HTMLResponse:
    hidden = "".join(f'<input type="hidden" name="{k}" value="{escape(v)}">' for k, v in request.items())
    buttons = []
    for user in sorted(state.users.values(), key=lambda u: u.login):
        companies = ", ".join(state.companies[c].name for c in sorted(user.company_ids) if c in state.companies)
        label = f"Continue as {user.name} ({user.login}) — {companies or 'no company'}"
        buttons.append(
            f'<form method="post" action="/oauth/authorize">{hidden}'
            f'<input type="hidden" name="login" value="{escape(user.login)}"><p><button>{escape(label)}</button></p>'
            "</form>"
        )
    notice = f'<p style="color: #b00">{escape(problem)}</p>' if problem else ""
    page = _SIGN_IN_PAGE.format(users=notice + ("".join(buttons) or "<p>No users yet.</p>"), hidden=hidden)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/oauth/authorize")
async def authorize(request: Request) -> Response:
    """Who consents: the user named by `login_hint` (tests, the demo) at once, otherwise a sign-in page."""
    state = sandbox_state(request)
    try:
        wanted = _authorize_request(request.query_params)
        if wanted["client_id"] not in state.clients:
            raise ProcoreError(401, "Client authentication failed", reason="invalid_client")
        hint = request.query_params.get("login_hint")
        user = state.user_by_login(hint) if hint else None
        if user is None:
            return _sign_in_page(state, wanted, f"No user {hint!r} in the sandbox." if hint else None)
        return _consent(state, wanted, user)
    except ProcoreError as err:
        return _oauth_error(err)


@router.post("/oauth/authorize")
async def authorize_signed_in(request: Request) -> Response:
    """The sign-in page's answer: allow as the chosen user, or deny (access_denied back to the app)."""
    state = sandbox_state(request)
    try:
        form = await read_body(request)
        if not isinstance(form, dict):
            raise ProcoreError(400, "Request body is required", reason="invalid_request")
        wanted = _authorize_request(form)
        if form.get("deny"):
            denied = {"error": "access_denied", "error_description": "The user denied access"}
            return _back_to_client(wanted, denied, 303)
        login = form.get("login")
        user = state.user_by_login(login) if isinstance(login, str) and login else None
        if user is None:
            return _sign_in_page(state, wanted, f"No user {login!r} in the sandbox.")
        # 303: the browser follows the form's POST with a GET to the app's callback.
        return _consent(state, wanted, user, 303)
    except ProcoreError as err:
        return _oauth_error(err)


@router.get("/oauth/token/info")
async def token_info(request: Request) -> Response:
    """Doorkeeper-style token introspection."""
    state = sandbox_state(request)
    try:
        tok = state.check_token(request.headers.get("authorization"))
    except ProcoreError as err:
        return JSONResponse(err.body(), status_code=401)
    client = state.clients[tok.client_id]
    return JSONResponse(
        {
            "resource_owner_id": tok.user_id if tok.user_id is not None else client.user_id,
            "scope": [],
            "expires_in": max(0, math.floor(tok.expires_at - state.wall())),
            "application": {"uid": client.client_id},
            "created_at": int(tok.created_at),
        }
    )


@router.post("/oauth/revoke")
async def revoke(request: Request) -> Response:
    """Revoke an access or refresh token (RFC 7009: unknown tokens are not an error)."""
    state = sandbox_state(request)
    try:
        body = await read_body(request)
    except ProcoreError as err:
        return _oauth_error(err)
    value = body.get("token") if isinstance(body, dict) else None
    if not isinstance(value, str):
        return _oauth_error(ProcoreError(400, "token is required", reason="invalid_request"))
    state.revoke(value)
    return JSONResponse({})
