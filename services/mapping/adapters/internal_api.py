"""`POST /internal/procore-token`: fresh access tokens of an account's connection, for the publisher.

Not public: the gateway is the only public edge. Callers authenticate with the shared
INTERNAL_API_TOKEN; the answer is `{access_token, expires_at, procore_company_id}`.
404 = not connected, 409 = needs reauthorization, 502 = Procore refused to renew the token,
503 (with Retry-After) = unavailable for now: the database, the network or Procore (5xx, 429, timeouts)
— the caller tries again later; nothing about the connection changed.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.mapping.connection import ConnectionDeps, NeedsReauthorization, NotConnected, access_token
from shared.events import Id
from shared.procore import ProcoreError
from shared.transient import transient_cause

log = logging.getLogger(__name__)

PATH = "/internal/procore-token"


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: Id
    force_refresh: bool = False
    rejected_token: str | None = None
    """The token Procore answered 401 to: refresh only if it is still the current one."""


def token_endpoint(deps: Callable[[], ConnectionDeps | None], internal_token: str) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await _answer(Request(scope, receive), deps(), internal_token)
        await response(scope, receive, send)

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


def _unavailable(message: str) -> JSONResponse:
    log.warning("token endpoint: %s", message)
    return JSONResponse({"message": message}, status_code=503, headers={"Retry-After": "1"})


async def _answer(request: Request, deps: ConnectionDeps | None, internal_token: str) -> JSONResponse:
    if request.method != "POST":
        return _error(405, "use POST")
    if not internal_token:
        return _error(503, "INTERNAL_API_TOKEN is not set: the token endpoint is disabled")
    if deps is None:
        return _error(503, "starting")
    given = request.headers.get("authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {internal_token}".encode()):
        return _error(401, "send Authorization: Bearer <INTERNAL_API_TOKEN>")
    try:
        body = TokenRequest.model_validate_json(await request.body())
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
        return _error(422, problems)
    try:
        token = await access_token(deps, body.account_id, body.force_refresh, body.rejected_token)
    except NotConnected as error:
        return _error(404, str(error))
    except NeedsReauthorization as error:
        return _error(409, str(error))
    except ProcoreError as error:
        if error.transient:
            return _unavailable(f"Procore could not renew the token now ({error.status}): {error.message}")
        return _error(502, f"Procore refused to renew the token: {error.message}")
    except Exception as error:
        if (cause := transient_cause(error)) is None:
            raise
        return _unavailable(f"temporarily unavailable: {cause!r}")
    return JSONResponse(
        {
            "access_token": token.access_token,
            "expires_at": token.expires_at,
            "procore_company_id": token.procore_company_id,
        },
        headers={"Cache-Control": "no-store"},
    )
