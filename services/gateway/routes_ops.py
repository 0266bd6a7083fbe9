"""Operations routes: health (readiness, liveness) and live updates (tickets, server-sent events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from services.gateway.adapters.live import BYE, LiveEvent, LiveHub
from services.gateway.dependencies import Who
from services.gateway.tokens import (
    LIVE_TICKET_TTL_S,
    NotAuthenticated,
    issue_live_ticket,
    read_live_ticket,
)
from shared.app import health_checks
from shared.readiness import Readiness, health_body

router = APIRouter()


async def _readiness(request: Request) -> JSONResponse:
    """The services' own readiness checks (`shared.app.health_checks`): the database and the broker answer."""
    broker = getattr(request.app.state, "broker", None)
    if broker is None:
        checks = {"database": False, "broker": False}
    else:
        checks = await health_checks(broker, lambda: getattr(request.app.state, "pool", None))()
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


class LiveTicket(BaseModel):
    ticket: str
    expires_in: int


@router.post("/api/live/ticket", tags=["live"])
async def post_live_ticket(request: Request, who: Who) -> LiveTicket:
    """A short-lived ticket for `GET /api/live?ticket=` (EventSource cannot send the bearer token)."""
    key: bytes = request.app.state.live_ticket_key
    return LiveTicket(ticket=issue_live_ticket(who, key), expires_in=LIVE_TICKET_TTL_S)


_KEEP_ALIVE_S = 15.0


@router.get(
    "/api/live",
    tags=["live"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"}},
)
async def get_live(
    request: Request,
    ticket: Annotated[str | None, Query(max_length=2048, description="From POST /api/live/ticket")] = None,
) -> StreamingResponse:
    """Server-sent events for the ticket's account: `entries` `{module, dates}` when entries changed (publish
    result, timelog change, mapping change), `mapping` `{what}` when mappings, synced lists, setup, the connection
    or a command outcome changed, `resync` when changes may have been missed (reload). No database connection
    is held per client."""
    if not ticket:
        raise NotAuthenticated("live updates need a ticket: POST /api/live/ticket, then GET /api/live?ticket=…")
    who = read_live_ticket(ticket, request.app.state.live_ticket_key)
    hub: LiveHub = request.app.state.live

    async def stream() -> AsyncIterator[bytes]:
        async with hub.subscribe(who.account_id) as queue:
            # retry: reconnect quickly after a drop; ready: the subscription is in place from here on.
            if hub.closing:
                yield BYE.encode()
                return
            yield b"retry: 1000\n\n" + LiveEvent("ready", {"listening": hub.listening}).encode()
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=_KEEP_ALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield event.encode()
                if event.event == "bye":
                    return

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
