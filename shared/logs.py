"""Logging for every process: one readable line per event on a console, or one JSON object per line.

* `LOG_FORMAT=text` (default): `12:30:01 INFO  services.publisher.workers: message` — the devstack supervisor
  prefixes the process name.
* `LOG_FORMAT=json`: one object per line with `time`, `level`, `service`, `logger`, `message`, `trace_id`,
  `span_id` (of the OpenTelemetry span current when the line was written) and `account_id` where known, plus
  any `extra=` fields — formatted by python-json-logger.
* Libraries (aiokafka, FastStream, uvicorn's access log, httpx …) log at WARNING and above unless asked:
  `LOG_LEVELS=aiokafka=INFO,uvicorn.access=INFO` sets any logger's level.

The account a line is about comes from `bind_account` (a context variable: the Kafka consumers bind the key's
account, the gateway the signed-in account).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Literal

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

QUIET_LIBRARIES = (
    "aiokafka",
    "faststream",
    "uvicorn.access",
    "uvicorn.error",
    "httpx",
    "httpcore",
    "asyncio",
    "opentelemetry",
    "kafka",
)
"""Loggers that say a lot at INFO about things an operator rarely needs (group joins, partition lists, one line
per request); WARNING and above still show."""

_account: contextvars.ContextVar[str | None] = contextvars.ContextVar("log_account_id", default=None)


def bind_account(account_id: str | None) -> contextvars.Token[str | None]:
    """Name the account the following log lines (in this task) are about."""
    return _account.set(account_id)


@contextlib.contextmanager
def account_context(account_id: str | None) -> Iterator[None]:
    token = _account.set(account_id)
    try:
        yield
    finally:
        _account.reset(token)


def current_account() -> str | None:
    return _account.get()


class ContextFilter(logging.Filter):
    """Adds `service`, `trace_id`, `span_id` and `account_id` to every record (None where unknown)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.service = self.service
        record.trace_id = trace.format_trace_id(context.trace_id) if context.is_valid else None
        record.span_id = trace.format_span_id(context.span_id) if context.is_valid else None
        if getattr(record, "account_id", None) is None:
            record.account_id = _account.get()
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{levelname}{service}{name}{message}{trace_id}{span_id}{account_id}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")


def parse_levels(spec: str) -> dict[str, str]:
    """`aiokafka=INFO,uvicorn.access=debug` → {"aiokafka": "INFO", "uvicorn.access": "DEBUG"}."""
    levels: dict[str, str] = {}
    for part in spec.split(","):
        name, sep, level = part.strip().partition("=")
        if not part.strip():
            continue
        if not sep or not name.strip() or level.strip().upper() not in logging.getLevelNamesMapping():
            raise ValueError(f"LOG_LEVELS: expected logger=LEVEL, got {part.strip()!r}")
        levels[name.strip()] = level.strip().upper()
    return levels


def configure_logging(
    service: str, level: str = "INFO", fmt: LogFormat = "text", levels: str = "", stream: object = None
) -> None:
    """Replace the root logger's handlers with one that writes `fmt` lines to stderr (or `stream`)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(json_formatter() if fmt == "json" else text_formatter())
    handler.addFilter(ContextFilter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        library = logging.getLogger(name)
        library.setLevel(max(logging.WARNING, root.level))
        # FastStream and uvicorn install handlers of their own; their records go through ours instead.
        for old in list(library.handlers):
            library.removeHandler(old)
        library.propagate = True
    for name, value in parse_levels(levels).items():
        logging.getLogger(name).setLevel(value)
