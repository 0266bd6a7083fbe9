"""Small HTTP helpers shared by the route modules: body parsing, error answers, pagination responses."""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from sandbox.procore.pagination import page_headers, paginate, parse_page_params
from sandbox.procore.state import Actor, Client, ProcoreError, SandboxState, Token

T = TypeVar("T")


@dataclass(frozen=True)
class RestContext:
    """What the gate established for a /rest request."""

    token: Token
    client: Client
    company_id: int | None  # from Procore-Company-Id
    actor: Actor


def sandbox_state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def rest_context(request: Request) -> RestContext:
    ctx: RestContext = request.state.rest
    return ctx


def require_company(request: Request) -> int:
    company_id = rest_context(request).company_id
    if company_id is None:
        raise ProcoreError(400, "Missing Procore-Company-Id header!")
    return company_id


def error_response(err: ProcoreError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def _nest_form(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """`timecard_entry[hours]=8` style keys (Rails form encoding) into nested dicts."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _multipart_pairs(content_type: str, raw: bytes) -> list[tuple[str, str]]:
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    pairs: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and part.get_filename() is None:
            payload = part.get_payload(decode=True)
            pairs.append((name, payload.decode() if isinstance(payload, bytes) else ""))
    return pairs


async def read_body(request: Request) -> Any:
    """JSON, urlencoded or multipart (text fields only) request body; None when empty."""
    raw = await request.body()
    if not raw:
        return None
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        return _nest_form(parse_qsl(raw.decode(), keep_blank_values=True))
    if content_type.startswith("multipart/form-data"):
        return _nest_form(_multipart_pairs(content_type, raw))
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ProcoreError(400, f"Request body is not valid JSON: {exc}") from exc


def paged(request: Request, items: Sequence[T], serialize: Callable[[T], Any]) -> JSONResponse:
    state = sandbox_state(request)
    page_req = parse_page_params(
        request.query_params.get("page"),
        request.query_params.get("per_page"),
        max_per_page=state.settings.per_page_max,
    )
    page = paginate(items, page_req)
    base_url = str(request.url).split("?", 1)[0]
    headers = page_headers(base_url, request.query_params.multi_items(), page)
    return JSONResponse([serialize(item) for item in page.items], headers=headers)


def empty_ok() -> Response:
    return Response(status_code=200)


def query_int(request: Request, name: str, *, required: bool = False) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        if required:
            raise ProcoreError(400, f"Missing required parameter: {name}")
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise ProcoreError(400, f"{name} must be an integer") from exc


def query_list(request: Request, name: str) -> list[str]:
    """Values of `name` and `name[]` together."""
    return [*request.query_params.getlist(name), *request.query_params.getlist(f"{name}[]")]
