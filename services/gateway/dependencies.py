"""Route dependencies: the signed-in principal (401 without a valid token), a read-only snapshot connection,
the command bus, the mapping service's internal API, per-account command limits; what every router shares.

They read `app.state`, which the lifespan in `bootstrap` fills. (Dependencies are async: FastAPI runs a plain `def`
one in a worker thread, a hop on every request.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.gateway import handlers
from services.gateway.adapters.mapping_internal import MappingInternal
from services.gateway.adapters.read_contracts import ReadContracts
from services.gateway.auth import TokenVerifier
from services.gateway.config import GatewaySettings
from services.gateway.rate_limits import CommandGroup, CommandRateLimits
from services.gateway.tokens import NotAuthenticated, Principal
from shared.logs import bind_account

_bearer = HTTPBearer(
    auto_error=False,
    description=(
        "A JWT from MobiClocks core (RS256 or EdDSA, its key named by kid in core's key set) with iss, aud, exp, sub, "
        "account_id and permissions. Development only: HS256 development tokens (dev login)."
    ),
)


async def settings_of(request: Request) -> GatewaySettings:
    """(Dependencies are async: FastAPI runs a plain `def` one in a worker thread, a hop on every request.)"""
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
    who = await verifier.principal(credentials.credentials)
    bind_account(who.account_id)  # the request's log lines name its account
    return who


async def command_bus(request: Request) -> handlers.CommandBus:
    bus: handlers.CommandBus = request.app.state.bus
    return bus


Who = Annotated[Principal, Depends(principal)]


Settings = Annotated[GatewaySettings, Depends(settings_of)]


@asynccontextmanager
async def snapshot(pool: asyncpg.Pool, settings: GatewaySettings) -> AsyncIterator[ReadContracts]:
    """The read contracts in one read-only, repeatable-read transaction: the gateway never writes the read model,
    and one answer reads one snapshot."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        yield ReadContracts(conn, settings.mapping_schema, settings.aggregator_schema)


async def read_contracts(request: Request, settings: Settings) -> AsyncIterator[ReadContracts]:
    """The request's read snapshot (`snapshot`)."""
    async with snapshot(request.app.state.pool, settings) as reads:
        yield reads


Reads = Annotated[ReadContracts, Depends(read_contracts)]


async def one_statement_reads(request: Request, settings: Settings) -> AsyncIterator[ReadContracts]:
    """The read contracts outside a transaction, for an answer read in one statement (its own snapshot): no BEGIN
    and COMMIT round trips. Read-only all the same: the gateway's role may only SELECT the read contracts."""
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        yield ReadContracts(conn, settings.mapping_schema, settings.aggregator_schema)


OneRead = Annotated[ReadContracts, Depends(one_statement_reads)]


Bus = Annotated[handlers.CommandBus, Depends(command_bus)]


async def mapping_internal(request: Request) -> MappingInternal:
    internal: MappingInternal = request.app.state.mapping_internal
    return internal


Internal = Annotated[MappingInternal, Depends(mapping_internal)]


def limited(group: CommandGroup) -> Any:
    """A route dependency: the caller's account may send only so many commands of `group` (429 past that)."""

    async def count(request: Request, who: Who) -> None:
        limits: CommandRateLimits = request.app.state.rate_limits
        await limits.hit(who.account_id, group)

    return Depends(count)


RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many commands of this kind from the account (Retry-After says when to try again)"}
}


CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "Two-way account: mappings come from linked ids"}}
