"""Procore's errors, with Procore's own message surfaced (bodies vary by endpoint)."""

from __future__ import annotations

from typing import Any

import httpx


class ProcoreError(Exception):
    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"Procore answered {status}: {message}")
        self.status = status
        self.message = message
        self.body = body

    @property
    def transient(self) -> bool:
        """Worth retrying later: timeouts, rate limits, server errors (a 401 is retried once after a refresh)."""
        return self.status in (408, 429) or self.status >= 500


def error_message(response: httpx.Response) -> str:
    """Procore's error bodies vary by endpoint: take the first meaningful text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "error_description", "errors", "error", "reason"):
            value = body.get(key)
            if value:
                return value if isinstance(value, str) else _flatten(value)[:500]
    return str(body)[:500]


def _flatten(value: Any) -> str:
    """`{"quantity": ["must be an integer"]}` → "quantity must be an integer"."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {_flatten(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flatten(v) for v in value)
    return str(value)
