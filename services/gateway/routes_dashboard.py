"""The dashboard's routes: who is signed in, the labels, a module's week, a cell's details, an entry, and the
publish commands (with the force-publish preview).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated
from uuid import UUID

import asyncpg
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from services.gateway import force_preview, handlers
from services.gateway.dependencies import RATE_LIMITED, Bus, Internal, OneRead, Reads, Settings, Who, limited, snapshot
from services.gateway.rate_limits import CommandGroup
from services.gateway.request_bodies import PreviewBody, PublishBody
from services.gateway.schemas import (
    Accepted,
    CellDetails,
    Dashboard,
    EntryDetail,
    EntryStatus,
    ForcePublishPreview,
    Me,
)
from services.gateway.week_cache import WeekCache, WeekKey
from services.gateway.weeks import week_of
from shared import labels
from shared.events import Module

router = APIRouter()


@router.get("/api/me", tags=["auth"])
async def me(who: Who) -> Me:
    """Who the token belongs to: user, account and permissions."""
    return Me(user_id=who.user_id, account_id=who.account_id, permissions=sorted(who.permissions))


@router.get("/api/labels", tags=["dashboard"])
async def get_labels(response: Response) -> dict[str, object]:
    """Every user-facing name (statuses, modules, permissions, mapping tabs, actions, connection methods, columns):
    the dashboard's only list of them. No sign-in needed; cacheable."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return labels.all_labels()


MAX_PAGE = 500
"""The most job sites one week request returns."""


@router.get("/api/modules/{module}/dashboard", tags=["dashboard"], response_model=Dashboard)
async def get_dashboard(
    request: Request,
    module: Module,
    who: Who,
    settings: Settings,
    week_start: Annotated[date | None, Query(description="First day shown; default: this week's Monday")] = None,
    status: Annotated[list[EntryStatus] | None, Query(description="Only entries with these statuses")] = None,
    q: Annotated[str, Query(max_length=100, description="Only job sites whose name or number contains this")] = "",
    offset: Annotated[int, Query(ge=0, description="Skip this many job sites (sorted by name)")] = 0,
    limit: Annotated[
        int | None, Query(ge=1, le=MAX_PAGE, description="At most this many job sites; default: all of them")
    ] = None,
) -> Response:
    """Job sites by the 7 days from week_start: numbers, status and allowed actions per cell; a page of the job
    sites with `limit`/`offset`, those matching `q`. Compact: a cell carries only what the grid shows. Served from
    memory until the aggregator announces a change of the account's entries of that module in that week."""
    start = week_start or week_of(datetime.now(UTC).date())
    cache: WeekCache = request.app.state.week_cache
    key = WeekKey.of(who.account_id, module, start, status or [], q.strip(), offset, limit)
    body = cache.get(key)
    if body is None:
        ticket = cache.ticket(key)  # before the snapshot: a change committed after it keeps this answer out
        async with snapshot(request.app.state.pool, settings) as reads:
            board = await handlers.dashboard(reads, who, module, start, status or [], q, offset, limit)
        # Serialized once by orjson, not validated again against the model (the model documents it; `dashboard`
        # builds it).
        body = orjson.dumps(board)
        cache.put(key, ticket, body)
    return Response(body, media_type="application/json")


def model_response(model: BaseModel) -> Response:
    """A model the handler built, serialized once (pydantic's own JSON): FastAPI would dump it, validate the dump
    against the response model again and encode it, three passes over the same data on every request."""
    return Response(model.model_dump_json(), media_type="application/json")


@router.get("/api/modules/{module}/cells/{job_site_id}/{work_date}", tags=["dashboard"], response_model=CellDetails)
async def get_cell(module: Module, job_site_id: str, work_date: date, who: Who, reads: OneRead) -> Response:
    """The details table of one job site on one day, with the Errors panel."""
    return model_response(await handlers.cell_details(reads, who, module, job_site_id, work_date))


@router.get("/api/entries/{entry_id}", tags=["dashboard"], response_model=EntryDetail)
async def get_entry(entry_id: UUID, who: Who, reads: Reads, settings: Settings) -> Response:
    """One entry, its details row and its publish history (each step with its trace id, and a link to the trace
    viewer when TRACE_URL_TEMPLATE is set)."""
    return model_response(await handlers.entry_detail(reads, who, entry_id, settings.trace_url_template))


@router.post(
    "/api/modules/{module}/publish",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.PUBLISH)],
    responses=RATE_LIMITED,
)
async def publish(request: Request, module: Module, body: PublishBody, who: Who, reads: Reads, bus: Bus) -> Accepted:
    """Publish, republish or force publish a cell, a list of entries or a date range (procore.publish). Force
    publish needs the preview_id of a preview of exactly these entries (409 otherwise)."""
    key: bytes = request.app.state.live_ticket_key
    return await handlers.request_publish(
        reads, bus, who, module, body.action, body.scope, body.preview_id, force_preview.signing_key(key)
    )


@router.post(
    "/api/modules/{module}/force-publish/preview",
    tags=["commands"],
    dependencies=[limited(CommandGroup.PUBLISH)],
    responses=RATE_LIMITED,
)
async def post_force_publish_preview(
    request: Request, module: Module, body: PreviewBody, who: Who, internal: Internal, settings: Settings
) -> ForcePublishPreview:
    """What a force publish of this scope writes, beside Procore's records read from Procore now (flagged where
    Procore changed them since we published), and the preview_id the force publish must send (procore.publish)."""
    key: bytes = request.app.state.live_ticket_key
    pool: asyncpg.Pool = request.app.state.pool  # released before Procore is called (no Reads dependency here)
    return await handlers.force_publish_preview(
        lambda: snapshot(pool, settings), internal, who, module, body.scope, force_preview.signing_key(key)
    )
