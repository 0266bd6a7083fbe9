"""Error mapping: the gateway's exceptions (and FastAPI's validation errors) → HTTP status and body."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.gateway.adapters.mapping_internal import MappingRefused, MappingUnavailable
from services.gateway.adapters.signing_keys import KeysUnavailable
from services.gateway.failures import InvalidInput, NotFound
from services.gateway.force_preview import PreviewRefused, PreviewTooLarge
from services.gateway.mapping_rules import Conflict
from services.gateway.permissions import MissingPermission
from services.gateway.rate_limits import RateLimited
from services.gateway.tokens import NotAuthenticated
from shared.transient import is_transient


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    """'body.scope.work_date' → names the field; the 'body'/'query'/'path' prefix says where it was."""
    return ".".join(str(p) for p in loc if not str(p).startswith(("function-after", "tagged-union")))


def install_error_handlers(app: FastAPI) -> None:  # noqa: C901 - one small handler per error type, registered together
    async def on_unreachable(request: Request, error: Exception) -> JSONResponse:
        # The database (or another dependency) is away: unavailable, not a server bug — 503, try again shortly.
        if not is_transient(error):
            raise error
        return JSONResponse(
            {"detail": "The service cannot reach its database right now; try again in a moment."},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    for unreachable in (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        app.add_exception_handler(unreachable, on_unreachable)

    @app.exception_handler(NotAuthenticated)
    async def on_not_authenticated(request: Request, error: NotAuthenticated) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(KeysUnavailable)
    async def on_keys_unavailable(request: Request, error: KeysUnavailable) -> JSONResponse:
        # Unavailable is not invalid: the token may be fine, it just cannot be checked right now.
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RateLimited)
    async def on_rate_limited(request: Request, error: RateLimited) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error), "retry_after_s": error.retry_after_s},
            status_code=429,
            headers={"Retry-After": str(error.retry_after_s)},
        )

    @app.exception_handler(MissingPermission)
    async def on_missing_permission(request: Request, error: MissingPermission) -> JSONResponse:
        return JSONResponse({"detail": str(error), "permission": error.permission.value}, status_code=403)

    @app.exception_handler(Conflict)
    async def on_conflict(request: Request, error: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(MappingRefused)
    async def on_mapping_refused(request: Request, error: MappingRefused) -> JSONResponse:
        # 403: a permission the mapping service checked again; otherwise the request cannot be done as asked.
        return JSONResponse({"detail": str(error)}, status_code=403 if error.status == 403 else 422)

    @app.exception_handler(MappingUnavailable)
    async def on_mapping_unavailable(request: Request, error: MappingUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(PreviewRefused)
    async def on_preview_refused(request: Request, error: PreviewRefused) -> JSONResponse:
        return JSONResponse({"detail": str(error), "message": str(error)}, status_code=409)

    @app.exception_handler(PreviewTooLarge)
    async def on_preview_too_large(request: Request, error: PreviewTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(error), "message": str(error)}, status_code=422)

    @app.exception_handler(NotFound)
    async def on_not_found(request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(InvalidInput)
    async def on_invalid_input(request: Request, error: InvalidInput) -> JSONResponse:
        field = _where(error.field)
        return JSONResponse(
            {
                "detail": [{"loc": list(error.field), "msg": str(error), "type": "value_error"}],
                "message": f"{field}: {error}",
            },
            status_code=422,
        )

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in error.errors()  # 'input' and 'ctx' left out: they may echo secrets or be unserializable
        ]
        message = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors)
        return JSONResponse({"detail": errors, "message": message}, status_code=422)
