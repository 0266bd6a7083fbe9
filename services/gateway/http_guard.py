"""HTTP hardening of every gateway response: request body limits and security headers (pure ASGI middleware).

- `BodyLimit`: a body larger than the limit is refused with 413 naming the limit, whether it announces its size
  (Content-Length, refused before a byte is read) or streams it (chunked: refused once the limit is passed; what
  the route would have done with it never happens, since the body never parses).
- `SecurityHeaders`: a Content-Security-Policy that allows no inline script (the dashboard and the dev login page
  load theirs from /static), frames denied (CSP frame-ancestors and X-Frame-Options), no MIME sniffing, no
  Referer, and no caching of API answers. A response that sets its own policy (the development /docs page) keeps it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from html.parser import HTMLParser
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""No inline script or style, no plug-ins, nothing from other origins, never inside a frame."""

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large: the limit is {limit} bytes (MAX_BODY_BYTES)")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, BodyTooLarge(self.max_bytes))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised where the route reads its body: FastAPI passes HTTPExceptions on, and the app's
                    # handler answers 413 (nothing was parsed, so nothing was done).
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, error: HTTPException) -> None:
    body = json.dumps({"detail": error.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # The body is never read: the server (uvicorn) closes the connection after this answer.
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    def __init__(self, app: ASGIApp, extra: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.headers = {**SECURITY_HEADERS, **(extra or {})}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith("/api/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                wanted = dict(self.headers)
                if api:
                    wanted["Cache-Control"] = "no-store"  # account data stays out of shared and browser caches
                for name, value in wanted.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


class _Sources(HTMLParser):
    """The inline scripts and the external origins of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[str] = []
        self.origins: dict[str, set[str]] = {"script": set(), "style": set(), "img": set()}
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            self._in_script = values.get("src") is None
            self._add("script", values.get("src"))
        elif tag == "link":
            kind = "style" if values.get("rel") == "stylesheet" else "img"
            self._add(kind, values.get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_scripts.append(data)

    def _add(self, kind: str, url: str | None) -> None:
        parts = urlsplit(url or "")
        if parts.scheme in ("http", "https") and parts.netloc:
            self.origins[kind].add(f"{parts.scheme}://{parts.netloc}")


def page_policy(html: str) -> str:
    """A Content-Security-Policy for a page we do not write ourselves (FastAPI's /docs, development only): exactly
    its inline scripts (by hash) and the origins it loads from, still never in a frame."""
    sources = _Sources()
    sources.feed(html)
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in sources.inline_scripts
    ]

    def listed(kind: str, *more: str) -> str:
        return " ".join(["'self'", *sorted(sources.origins[kind]), *more])

    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {listed('script', *hashes)}",
            f"style-src {listed('style')}",
            f"img-src {listed('img', 'data:')}",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )
