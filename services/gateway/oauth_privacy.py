"""The OAuth callback's query carries the authorization code and the state: keep them out of traces and access logs.

The FastAPI/ASGI instrumentation records the request URL on the server span (`http.url`, `http.target`,
`url.query`) and uvicorn's access log prints the path with its query. `scrub_server_span` (a server
request hook) rewrites those attributes before the span ends — exporters see only the scrubbed values —
and `QueryScrubber` (a logging filter on `uvicorn.access`) rewrites the access-log line.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from opentelemetry.trace import Span

SECRET_PARAMS = frozenset({"code", "state"})
REDACTED = "REDACTED"


def scrub_query(query: str) -> str:
    """The query with the values of `code` and `state` replaced (other parameters kept as they were)."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name in SECRET_PARAMS for name, _ in pairs):
        return query
    return urlencode([(name, REDACTED if name in SECRET_PARAMS else value) for name, value in pairs])


def scrub_target(target: str) -> str:
    """A path with its query (`/oauth/procore/callback?code=…&state=…`), scrubbed."""
    path, mark, query = target.partition("?")
    return f"{path}{mark}{scrub_query(query)}" if mark else target


def secret_values(query: str) -> list[str]:
    """The values to hide, as they may appear: decoded and as sent (percent-encoded)."""
    found: list[str] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in SECRET_PARAMS and value:
            found += [value, quote(value, safe=""), quote(value)]
    return sorted(set(found), key=len, reverse=True)


def scrub_server_span(span: Span, scope: dict[str, Any]) -> None:
    """Server request hook: replace the code and the state in every string attribute of the request's span."""
    query = (scope.get("query_string") or b"").decode("latin-1")
    hidden = secret_values(query)
    if not hidden or not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key, value in dict(attributes).items():
        if isinstance(value, str) and any(secret in value for secret in hidden):
            scrubbed = value.replace(query, scrub_query(query))
            for secret in hidden:
                scrubbed = scrubbed.replace(secret, REDACTED)
            span.set_attribute(key, scrubbed)


class QueryScrubber(logging.Filter):
    """uvicorn's access log: `'%s - "%s %s HTTP/%s" %d'` with (client, method, path with query, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], scrub_target(args[2]), *args[3:])
        return True


def install_access_log_scrubber() -> None:
    """Once per process (the filter stays on the logger when uvicorn configures logging)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QueryScrubber) for f in access.filters):
        access.addFilter(QueryScrubber())
