"""The internal HTTP API, Bearer INTERNAL_API_TOKEN (32 characters or more), JSON, on a port of its own
(INTERNAL_HTTP_PORT, `InternalServer`): the service's public HTTP_PORT answers 404 to these paths, and only the
publisher and the gateway can reach this one (the gateway is the only public edge).

- `POST /internal/procore-token {account_id, procore_company_id?, force_refresh?, rejected_token?}` → `{access_token,
  expires_at, procore_company_id}`: a token of the account's connection for a company bound to the account (the
  publisher's). 403 `{"error": "company_not_bound"}` when the company named (or, without one, the company Setup
  chose) is not bound to the account; 404 not connected; 409 needs reauthorization; 502 Procore refused to
  renew the token; 503 (with Retry-After) unavailable for now — try again; nothing changed.
- `POST /internal/oauth/start {account_id, user_id, permissions, redirect_uri}` → `{authorize_url, browser_nonce,
  expires_in}` (the gateway keeps the nonce in an HttpOnly cookie of the browser that starts the flow).
- `POST /internal/oauth/complete {state, browser_nonce, code}` → 202 `{command_id}` (the command that proves and
  binds the companies; follow it in command outcomes); 400/403 with the reason otherwise.
- `POST /internal/procore/service-account {account_id, user_id, permissions, client_id, client_secret,
  procore_company_id?}` → 202
  `{command_id}`; 400 when Procore refuses the credentials or they are the app's own.

- `POST /internal/procore/webhook {authorization, event}` → `{outcome}`: a Procore webhook delivery the gateway
  received (`webhooks.receive`); 401 without the secret of a hook of ours, 400 when it is not a Procore event.

- `POST /internal/procore/records {account_id, procore_company_id, records: [{module, procore_project_id,
  procore_id}]}` → `{records: [{procore_id, found, record}]}`: the records as Procore holds them right now, read
  with the account's connection (the gateway's force-publish preview). `found` false: Procore answered 404.

The authorization code and a customer's client secret come here over HTTP, never over Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import uvicorn
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.mapping import webhooks
from services.mapping.adapters import procore_links, setups
from services.mapping.adapters.procore_links import UndecryptableSecret
from services.mapping.deps import MappingDeps
from services.mapping.procore_link import (
    NeedsReauthorization,
    NotBound,
    NotConnected,
    Refused,
    Requester,
    access_token,
    client_for,
    complete_authorization,
    connect_service_account,
    start_authorization,
)
from shared.events import ConnectionStatus, Id, Module, Permissions, ProcoreId
from shared.procore import ProcoreError
from shared.procore.records import record_path
from shared.transient import transient_cause

log = logging.getLogger(__name__)

PATH = "/internal/procore-token"
OAUTH_START = "/internal/oauth/start"
OAUTH_COMPLETE = "/internal/oauth/complete"
SERVICE_ACCOUNT = "/internal/procore/service-account"
RECORDS = "/internal/procore/records"
WEBHOOK = "/internal/procore/webhook"
MAX_RECORDS = 200
"""One preview reads at most this many records (each one GET against the company's Procore rate budget)."""
RECORD_READS_AT_ONCE = 4

Secret = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: Id
    procore_company_id: ProcoreId | None = None
    """The company the caller is about to call: it must be bound to the account. Without it: Setup's company."""
    force_refresh: bool = False
    rejected_token: str | None = None
    """The token Procore answered 401 to: refresh only if it is still the current one."""


def _absolute_http(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("must be an absolute http(s) URL without query or fragment")
    return url


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: Id
    user_id: Id
    permissions: Permissions
    redirect_uri: Annotated[str, StringConstraints(max_length=2000), AfterValidator(_absolute_http)]


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Secret
    browser_nonce: Annotated[str, StringConstraints(max_length=1024)]
    code: Secret


class ServiceAccountRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: Id
    user_id: Id
    permissions: Permissions
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    client_secret: Annotated[SecretStr, Field(min_length=1, max_length=1024)]
    procore_company_id: ProcoreId | None = None
    """The service account's company (sent in Procore-Company-Id when proving the connection)."""


class RecordRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    module: Module
    procore_project_id: ProcoreId
    procore_id: ProcoreId


class RecordsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: Id
    procore_company_id: ProcoreId
    records: Annotated[list[RecordRef], Field(min_length=1, max_length=MAX_RECORDS)]


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    authorization: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """The delivery's Authorization header, as Procore sent it (the hook's secret)."""
    event: dict[str, Any]


Body = TypeVar("Body", bound=BaseModel)
Handler = Callable[[MappingDeps, Body], Awaitable[JSONResponse]]


def routes(deps: Callable[[], MappingDeps | None], internal_token: str) -> list[tuple[str, ASGIApp]]:
    """(path, ASGI app) of every internal endpoint."""
    return [
        (PATH, _endpoint(deps, internal_token, TokenRequest, _token)),
        (OAUTH_START, _endpoint(deps, internal_token, StartRequest, _start)),
        (OAUTH_COMPLETE, _endpoint(deps, internal_token, CompleteRequest, _complete)),
        (SERVICE_ACCOUNT, _endpoint(deps, internal_token, ServiceAccountRequest, _service_account)),
        (RECORDS, _endpoint(deps, internal_token, RecordsRequest, _records)),
        (WEBHOOK, _endpoint(deps, internal_token, WebhookRequest, _webhook)),
    ]


def app(deps: Callable[[], MappingDeps | None], internal_token: str) -> ASGIApp:
    """The internal API as an app of its own: these exact paths, 404 for any other."""
    table = dict(routes(deps, internal_token))

    async def internal(scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = table.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await _error(404, "not found")(scope, receive, send)
            return
        await endpoint(scope, receive, send)

    return internal


class _Embedded(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process's main server owns SIGINT/SIGTERM; this one stops with the service's lifespan.
        yield


class InternalServer:
    """The internal API under its own uvicorn server, in the service's process and event loop, on its own port."""

    def __init__(self, internal_app: ASGIApp, host: str, port: int, log_level: str) -> None:
        self.host, self.port = host, port
        # log_config=None: logging is the process's (configured once); access lines carry paths only, never a body.
        config = uvicorn.Config(
            internal_app, lifespan="off", log_level=None, log_config=None, timeout_graceful_shutdown=5
        )
        self._server = _Embedded(config)
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def start(self) -> None:
        """Listen (an OSError names a port already taken) and serve until `stop`."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="internal API")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the internal API server stopped while starting")
            await asyncio.sleep(0.01)
        log.info("internal API on http://%s:%d (apart from the public port)", self.host, self.port)

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _endpoint(
    deps: Callable[[], MappingDeps | None], internal_token: str, model: type[Body], handle: Handler[Body]
) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await _answer(Request(scope, receive), deps(), internal_token, model, handle)
        await response(scope, receive, send)

    return app


def _error(status: int, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status, headers={"Cache-Control": "no-store"})


def _unavailable(message: str) -> JSONResponse:
    log.warning("internal API: %s", message)
    return JSONResponse({"message": message}, status_code=503, headers={"Retry-After": "1"})


async def _answer(
    request: Request, deps: MappingDeps | None, internal_token: str, model: type[Body], handle: Handler[Body]
) -> JSONResponse:
    if request.method != "POST":
        return _error(405, "use POST")
    if not internal_token:
        return _error(503, "INTERNAL_API_TOKEN is not set: the internal API is disabled")
    if deps is None:
        return _error(503, "starting")
    given = request.headers.get("authorization", "")
    if not secrets.compare_digest(given.encode(), f"Bearer {internal_token}".encode()):
        return _error(401, "send Authorization: Bearer <INTERNAL_API_TOKEN>")
    try:
        body = model.model_validate_json(await request.body())
    except ValidationError as error:
        # Field names and problems only: the input may be a secret (a code, a client secret).
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
        return _error(422, problems)
    try:
        return await handle(deps, body)
    except NotConnected as error:
        return _error(404, str(error))
    except UndecryptableSecret as error:
        # A key removed too early, or a ciphertext copied from another account's row: unusable, never handed out.
        log.error("internal API: %s", error)
        return _error(409, f"the stored Procore connection cannot be used ({error}): connect to Procore again")
    except NeedsReauthorization as error:
        return _error(409, str(error))
    except NotBound as error:
        return _error(403, str(error), error="company_not_bound")
    except Refused as error:
        return _error(error.status, str(error))
    except ProcoreError as error:
        if error.transient:
            return _unavailable(f"Procore is unavailable now ({error.status}): {error.message}")
        return _error(502, f"Procore refused to renew the token: {error.message}")
    except Exception as error:
        if (cause := transient_cause(error)) is None:
            raise
        return _unavailable(f"temporarily unavailable: {cause!r}")


async def _token(deps: MappingDeps, body: TokenRequest) -> JSONResponse:
    company = body.procore_company_id
    if company is None:
        async with deps.pool.acquire() as db:
            setup = await setups.read_setup(db, body.account_id)
            status = await procore_links.status_of(db, body.account_id)
        company = setup.procore_company_id if setup else None
        if status in (None, ConnectionStatus.DISCONNECTED):
            raise NotConnected(f"Procore is not connected for account {body.account_id}")
        if company is None:
            raise NotBound(f"no Procore company is chosen for account {body.account_id}")
    token = await access_token(deps, body.account_id, company, body.force_refresh, body.rejected_token)
    return JSONResponse(
        {
            "access_token": token.access_token,
            "expires_at": token.expires_at,
            "procore_company_id": token.procore_company_id,
        },
        headers={"Cache-Control": "no-store"},
    )


async def _start(deps: MappingDeps, body: StartRequest) -> JSONResponse:
    who = Requester(body.account_id, body.user_id, body.permissions)
    started = await start_authorization(deps, who, body.redirect_uri)
    return JSONResponse(
        {
            "authorize_url": started.authorize_url,
            "browser_nonce": started.browser_nonce,
            "expires_in": started.expires_in,
        },
        headers={"Cache-Control": "no-store"},
    )


async def _complete(deps: MappingDeps, body: CompleteRequest) -> JSONResponse:
    command_id = await complete_authorization(deps, body.state, body.browser_nonce, body.code)
    return JSONResponse({"command_id": str(command_id)}, status_code=202)


async def _service_account(deps: MappingDeps, body: ServiceAccountRequest) -> JSONResponse:
    who = Requester(body.account_id, body.user_id, body.permissions)
    secret = body.client_secret.get_secret_value()
    command_id = await connect_service_account(deps, who, body.client_id, secret, body.procore_company_id)
    return JSONResponse({"command_id": str(command_id)}, status_code=202)


async def _webhook(deps: MappingDeps, body: WebhookRequest) -> JSONResponse:
    """A Procore webhook delivery the gateway received: 401 unless it carries a hook's secret."""
    try:
        outcome = await webhooks.receive(deps, body.authorization, body.event)
    except webhooks.Unauthorized:
        return _error(401, "not a delivery of a hook of ours")
    except webhooks.InvalidDelivery as error:
        return _error(400, str(error))
    return JSONResponse({"outcome": outcome})


async def _records(deps: MappingDeps, body: RecordsRequest) -> JSONResponse:
    """Procore's current records, read with the account's connection for a company bound to it."""
    company = body.procore_company_id
    client = client_for(deps, body.account_id, company)
    at_once = asyncio.Semaphore(RECORD_READS_AT_ONCE)

    async def read(ref: RecordRef) -> dict[str, object]:
        async with at_once:
            try:
                record = await client.get_json(record_path(ref.module, ref.procore_project_id, ref.procore_id), company)
            except ProcoreError as error:
                if error.status != 404:
                    raise
                return {"procore_id": ref.procore_id, "found": False, "record": None}
        return {"procore_id": ref.procore_id, "found": True, "record": record}

    try:
        found = await asyncio.gather(*(read(ref) for ref in body.records))
    except ProcoreError as error:
        if error.transient:
            raise
        return _error(502, f"Procore refused to show the record: {error.message}")
    return JSONResponse({"records": found}, headers={"Cache-Control": "no-store"})
