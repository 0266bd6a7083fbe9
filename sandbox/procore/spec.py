"""Validate HTTP requests/responses against openapi-subset.json (openapi-core, OAS 3.0).

Use it to assert that what a client sends to Procore (and what the sandbox answers) matches the subset:

    from sandbox.procore.spec import validate_request, validate_response
    validate_request("POST", url, headers, body)                      # raises SpecValidationError
    validate_response("POST", url, headers, body, status, resp_headers, resp_body)

or, with httpx objects, `validate_httpx_request(request)` / `validate_httpx_response(response)`.

URLs may point at any host (the sandbox, a proxy): only the path and query are matched, against the
spec's `https://api.procore.com` server (`https://login.procore.com` for /oauth/*). Paths in the spec carry
the version (`/rest/v1.0/...`, `/oauth/token`).

The subset is reconstructed (README §1) and demonstrably odd in places. These deviations are tolerated,
and only these (see TOLERATED_DEVIATIONS):
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).with_name("openapi-subset.json")
SPEC_SERVER = "https://api.procore.com"
SPEC_LOGIN_SERVER = "https://login.procore.com"  # /oauth/* operations declare the login host

TOLERATED_DEVIATIONS: dict[str, str] = {
    "response-nullable": (
        "Responses: every schema also accepts null. The subset's schemas came from pydantic models that lost "
        "`nullable`; Procore sends null for unset fields (deleted_at, cost_code, vendor, origin_id, ...)."
    ),
    "response-enum": (
        "Responses: enum lists are not enforced (README §1: enum lists are hints; e.g. the trigger response "
        "enum is CREATE/UPDATE/DELETE while the request enum is create/update/delete)."
    ),
    "oneof-as-anyof": (
        "oneOf is checked as anyOf. The subset's oneOf branches are open object schemas that overlap "
        "(cost codes Extended1/Compact1, webhook hook bodies), so a valid value matches several branches."
    ),
    "timecard-time-format": (
        "Responses: `format: date` on time_in/time_out is not enforced (README §1 calls it odd; the values "
        "are date-times)."
    ),
    "filter-format": (
        "Query `filters[...]` parameters: `format` is not enforced, because Procore takes ISO 8601 ranges "
        "`start...end` there (e.g. filters[updated_at] is declared `format: date`)."
    ),
    "project-timecard-required": (
        "POST /rest/v1.0/projects/{project_id}/timecard_entries: instead of requiring all of hours, "
        "lunch_time, time_in and time_out, requires `hours` or `time_in`+`time_out` (the field descriptions "
        "say to send one or the other depending on the timesheet's time-entry setting; README §5.3)."
    ),
    "webhook-scope-params": (
        "v1.0 webhook list/delete operations: company_id and project_id are optional (both are marked "
        "required, but their descriptions say either one; README §5.5)."
    ),
    "oauth-token-security": (
        "POST /oauth/token needs no bearer token. Everywhere else the spec's global oauth2 requirement is "
        "checked by this helper as `Authorization: Bearer <token>` present (openapi-core skips oauth2)."
    ),
}
__doc__ = (__doc__ or "") + "".join(f"\n- {key}: {text}" for key, text in TOLERATED_DEVIATIONS.items())


class SpecValidationError(AssertionError):
    """A request or response does not match openapi-subset.json."""


# ---------------------------------------------------------------- spec preparation


def _root_schemas(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("components", {}).get("schemas", {}).values()
    for path_item in spec["paths"].values():
        for op in path_item.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                if "schema" in param:
                    yield param["schema"]
            for media in op.get("requestBody", {}).get("content", {}).values():
                if "schema" in media:
                    yield media["schema"]
            for response in op.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    if "schema" in media:
                        yield media["schema"]
                for header in response.get("headers", {}).values():
                    if "schema" in header:
                        yield header["schema"]


def _subschemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`schema` and every schema nested in it (not following $ref)."""
    yield schema
    children: list[Any] = list((schema.get("properties") or {}).values())
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            children.append(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        children.extend(schema.get(key) or [])
    for child in children:
        if isinstance(child, dict):
            yield from _subschemas(child)


def _all_schemas(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for root in list(_root_schemas(spec)):
        yield from _subschemas(root)


def _common_patches(spec: dict[str, Any]) -> None:
    for node in _all_schemas(spec):
        if isinstance(node.get("oneOf"), list):
            node["anyOf"] = node.pop("oneOf")
    for path_item in spec["paths"].values():
        for op in path_item.values():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                if param.get("in") == "query" and str(param.get("name", "")).startswith("filters["):
                    for schema in _subschemas(param.get("schema", {})):
                        schema.pop("format", None)
    spec["paths"]["/oauth/token"]["post"]["security"] = []

    # Project timecard create: hours, or time_in + time_out.
    body = spec["paths"]["/rest/v1.0/projects/{project_id}/timecard_entries"]["post"]["requestBody"]
    for media in body["content"].values():
        schema = _resolve(spec, media["schema"])
        entry = copy.deepcopy(_resolve(spec, schema["properties"]["timecard_entry"]))
        entry.pop("required", None)
        entry["anyOf"] = [{"required": ["hours"]}, {"required": ["time_in", "time_out"]}]
        schema = copy.deepcopy(schema)
        schema["properties"]["timecard_entry"] = entry
        media["schema"] = schema

    for path, path_item in spec["paths"].items():
        if path.startswith("/rest/v1.0/webhooks/"):
            for op in path_item.values():
                for param in op.get("parameters", []) if isinstance(op, dict) else []:
                    if param.get("in") == "query" and param.get("name") in ("company_id", "project_id"):
                        param["required"] = False


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _response_patches(spec: dict[str, Any]) -> None:
    for node in _all_schemas(spec):
        if "$ref" in node:
            continue
        node["nullable"] = True
        node.pop("enum", None)
        props = node.get("properties")
        if isinstance(props, dict):
            for name in ("time_in", "time_out"):
                prop = props.get(name)
                if isinstance(prop, dict) and prop.get("format") == "date":
                    prop.pop("format")


@lru_cache(maxsize=1)
def _raw_spec() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return loaded


@lru_cache(maxsize=1)
def request_openapi() -> OpenAPI:
    spec = copy.deepcopy(_raw_spec())
    _common_patches(spec)
    return OpenAPI.from_dict(spec)


@lru_cache(maxsize=1)
def response_openapi() -> OpenAPI:
    spec = copy.deepcopy(_raw_spec())
    _common_patches(spec)
    _response_patches(spec)
    return OpenAPI.from_dict(spec)


# ---------------------------------------------------------------- openapi-core adapters


@dataclass
class _Request:
    method: str
    path: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters
    host_url: str = SPEC_SERVER


@dataclass
class _Response:
    status_code: int
    content_type: str
    data: bytes | None
    headers: Headers = field(default_factory=Headers)


def _to_bytes(body: Any) -> bytes | None:
    if body is None:
        return None
    if isinstance(body, bytes):
        return body or None
    if isinstance(body, str):
        return body.encode() or None
    return json.dumps(body).encode()


def _build_request(method: str, url: str, headers: Mapping[str, str] | None, body: Any) -> _Request:
    parts = urlsplit(url)
    hdrs = Headers(dict(headers or {}))
    data = _to_bytes(body)
    content_type = hdrs.get("Content-Type") or ("application/json" if data is not None else "")
    return _Request(
        host_url=SPEC_LOGIN_SERVER if parts.path.startswith("/oauth/") else SPEC_SERVER,
        method=method.lower(),
        path=parts.path,
        body=data,
        content_type=content_type.lower(),
        parameters=RequestParameters(
            query=ImmutableMultiDict(parse_qsl(parts.query, keep_blank_values=True)),
            header=hdrs,
        ),
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    lines = [text if text.startswith(name) else f"{name}: {text}"]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for err in getattr(current, "schema_errors", None) or []:
            where = "/".join(str(p) for p in getattr(err, "absolute_path", [])) or "<root>"
            lines.append(f"  at {where}: {getattr(err, 'message', err)}")
        current = current.__cause__ or current.__context__
        if current is not None and not getattr(current, "schema_errors", None):
            lines.append(f"  caused by {type(current).__name__}: {current}")
    return "\n".join(lines)


# ---------------------------------------------------------------- public API


def validate_request(method: str, url: str, headers: Mapping[str, str] | None = None, body: Any = None) -> None:
    """Raise SpecValidationError unless the request matches its operation (path, params, headers, body).

    `body` may be bytes, str, or a JSON-able object (serialized as application/json).
    """
    request = _build_request(method, url, headers, body)
    if not request.path.startswith("/oauth/token"):
        auth = str(request.parameters.header.get("Authorization") or "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise SpecValidationError(
                f"{method.upper()} {request.path} request:\nmissing `Authorization: Bearer <token>`"
            )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unsupported scheme type")
            request_openapi().validate_request(request)
    except Exception as exc:
        raise SpecValidationError(f"{method.upper()} {request.path} request:\n{_describe(exc)}") from exc


def validate_response(
    method: str,
    url: str,
    request_headers: Mapping[str, str] | None,
    request_body: Any,
    status_code: int,
    response_headers: Mapping[str, str] | None,
    response_body: Any,
) -> None:
    """Raise SpecValidationError unless the response matches the operation's declared response."""
    request = _build_request(method, url, request_headers, request_body)
    resp_headers = Headers(dict(response_headers or {}))
    data = _to_bytes(response_body)
    response = _Response(
        status_code=status_code,
        content_type=(resp_headers.get("Content-Type") or ("application/json" if data else "")).lower(),
        data=data,
        headers=resp_headers,
    )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unsupported scheme type")
            response_openapi().validate_response(request, response)
    except Exception as exc:
        raise SpecValidationError(
            f"{method.upper()} {request.path} -> {status_code} response:\n{_describe(exc)}"
        ) from exc


def validate_httpx_request(request: httpx.Request) -> None:
    """`validate_request` for an httpx.Request (e.g. from an event hook or MockTransport handler)."""
    validate_request(request.method, str(request.url), dict(request.headers), request.content)


def validate_httpx_response(response: httpx.Response) -> None:
    """`validate_response` for an httpx.Response (reads its request from `response.request`)."""
    request = response.request
    validate_response(
        request.method,
        str(request.url),
        dict(request.headers),
        request.content,
        response.status_code,
        dict(response.headers),
        response.content,
    )


def has_operation(method: str, path: str) -> bool:
    """Whether the subset documents `method path` (path with concrete ids, e.g. /rest/v1.0/projects/1/...)."""
    for template, item in _raw_spec()["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return True
    return False
