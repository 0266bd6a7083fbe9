"""Data mapping's routes: tabs, rows, manual mappings, sync, auto-map, and what became of a command."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query

from services.gateway import handlers, mapping_handlers
from services.gateway.dependencies import CONFLICT, RATE_LIMITED, Bus, Reads, Who, limited
from services.gateway.rate_limits import CommandGroup
from services.gateway.request_bodies import AutoMapBody, MappingBody
from services.gateway.schemas import (
    Accepted,
    CommandOutcome,
    MappingOverview,
    MappingTab,
)
from shared.events import ProcoreEntity, ProcoreId

router = APIRouter()


@router.put(
    "/api/mappings/{entity}/{mobiclocks_id}",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.MAPPING)],
    responses={**CONFLICT, **RATE_LIMITED},
)
async def put_mapping(
    entity: ProcoreEntity,
    mobiclocks_id: Annotated[str, Path(min_length=1, max_length=64)],
    body: MappingBody,
    who: Who,
    reads: Reads,
    bus: Bus,
) -> Accepted:
    """Map a MobiClocks entity to a Procore entity, or clear it with null (procore.mapping); 409 in two-way accounts."""
    two_way = await mapping_handlers.is_two_way(reads, who.account_id)
    return await handlers.set_mapping(
        bus, who, entity, mobiclocks_id, body.procore_id, body.procore_project_id, two_way=two_way
    )


@router.get("/api/mapping", tags=["mapping"])
async def get_mapping_overview(who: Who, reads: Reads) -> MappingOverview:
    """The Data mapping tabs the enabled modules need, and the mapped projects (procore.mapping)."""
    return await mapping_handlers.overview(reads, who)


@router.get("/api/mapping/{entity}", tags=["mapping"])
async def get_mapping_tab(
    entity: ProcoreEntity,
    who: Who,
    reads: Reads,
    procore_project_id: Annotated[
        ProcoreId | None, Query(description="Cost codes: the mapped Procore project (default: the first)")
    ] = None,
) -> MappingTab:
    """One tab's rows, their mappings, the synced Procore entities, last sync and auto-map report."""
    return await mapping_handlers.mapping_tab(reads, who, entity, procore_project_id)


@router.post(
    "/api/mapping/{entity}/sync",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SYNC)],
    responses=RATE_LIMITED,
)
async def post_sync(entity: ProcoreEntity, who: Who, bus: Bus) -> Accepted:
    """Pull the whole Procore list of this tab (procore.mapping); follow it with GET /api/commands/{id}."""
    return await mapping_handlers.sync(bus, who, entity)


@router.post(
    "/api/mapping/{entity}/auto-map",
    status_code=202,
    tags=["commands"],
    dependencies=[limited(CommandGroup.SYNC)],
    responses={**CONFLICT, **RATE_LIMITED},
)
async def post_auto_map(
    entity: ProcoreEntity, who: Who, reads: Reads, bus: Bus, body: AutoMapBody | None = None
) -> Accepted:
    """Map rows whose Number equals a Procore entity's number (procore.mapping); 409 in two-way accounts."""
    two_way = await mapping_handlers.is_two_way(reads, who.account_id)
    overwrite = body.overwrite_manual if body is not None else False
    return await mapping_handlers.auto_map(bus, who, entity, overwrite, two_way)


@router.get("/api/commands/{command_id}", tags=["commands"])
async def get_command(command_id: UUID, who: Who, reads: Reads) -> CommandOutcome:
    """What became of a setup or mapping command: pending, done, rejected (why) or failed (Procore's message)."""
    return await mapping_handlers.command_outcome(reads, who, command_id)
