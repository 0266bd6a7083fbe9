"""Procore's error answers: every rule violation raises `ProcoreError`; the HTTP layer turns it into Procore's body."""

from __future__ import annotations

from typing import Any


class ProcoreError(Exception):
    """A Procore-style error answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str | None = None,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "reason": self.reason or self.message,
            "fields": ", ".join(self.errors) if self.errors else "",
            "error": None,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


def invalid(field_name: str, problem: str) -> ProcoreError:
    return ProcoreError(422, f"{field_name} {problem}", errors={field_name: [problem]})


def require_wrapper(body: Any, wrapper: str) -> dict[str, Any]:
    """Rails strong-params: the wrapper object must be present and non-empty, else 400."""
    if not isinstance(body, dict) or not isinstance(body.get(wrapper), dict) or not body[wrapper]:
        raise ProcoreError(400, f"param is missing or the value is empty: {wrapper}", reason="bad_request")
    inner: dict[str, Any] = body[wrapper]
    return inner
