"""OAuth 2.0: token (client_credentials, authorization_code, refresh_token), authorize, info, revoke."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from sandbox.procore.http_util import read_body, sandbox_state
from sandbox.procore.state import ProcoreError, Token

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
            issued = state.redeem_auth_code(client, body.get("code"), body.get("redirect_uri"))
        elif grant_type == "refresh_token":
            issued = state.refresh(client, body.get("refresh_token"))
        else:
            raise ProcoreError(400, f"Unsupported grant_type {grant_type!r}", reason="unsupported_grant_type")
    except ProcoreError as err:
        return _oauth_error(err)
    return JSONResponse(_token_body(issued))


@router.get("/oauth/authorize")
async def authorize(request: Request) -> Response:
    """No login page: immediately redirect back with a one-time code."""
    state = sandbox_state(request)
    params = request.query_params
    client_id, redirect_uri = params.get("client_id"), params.get("redirect_uri")
    if params.get("response_type") != "code" or not client_id or not redirect_uri:
        return _oauth_error(
            ProcoreError(400, "client_id, redirect_uri and response_type=code are required", reason="invalid_request")
        )
    if not urlsplit(redirect_uri).scheme:
        return _oauth_error(ProcoreError(400, "redirect_uri must be absolute", reason="invalid_request"))
    try:
        code = state.issue_auth_code(client_id, redirect_uri)
    except ProcoreError as err:
        return _oauth_error(err)
    query = {"code": code}
    if params.get("state") is not None:
        query["state"] = params["state"]
    separator = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(query)}", status_code=302)


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
            "resource_owner_id": client.user_id,
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
