"""Procore's value formats: the lenient coercion of request fields (Rails-like) and the formatting of answers."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.procore.state.errors import invalid


def fmt_ts(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def fmt_decimal(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text if "." in text else f"{text}.0"


INT_RE = re.compile(r"^-?\d+$")


def parse_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise invalid(name, "must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and INT_RE.match(value.strip()):
        return int(value)
    raise invalid(name, f"must be an integer, got {value!r}")


def parse_opt_int(value: Any, name: str) -> int | None:
    return None if value is None or value == "" else parse_int(value, name)


def parse_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool):
        raise invalid(name, "must be a number")
    if isinstance(value, int | float | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise invalid(name, f"must be a number, got {value!r}") from exc
        if not result.is_finite():
            raise invalid(name, "must be a finite number")
        return result
    raise invalid(name, f"must be a number, got {value!r}")


def parse_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise invalid(name, "must be a string")


def parse_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise invalid(name, "must be a boolean")


def parse_date(value: Any, name: str) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise invalid(name, f"must be a date in YYYY-MM-DD format, got {value!r}")


def parse_datetime(value: Any, name: str, day: date | None = None) -> datetime:
    """ISO 8601 datetime, or a bare HH:MM[:SS] taken on `day` (UTC)."""
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            parsed = None
            if day is not None and re.match(r"^\d{1,2}:\d{2}(:\d{2})?$", text):
                parsed = datetime.fromisoformat(f"{day.isoformat()}T{text.zfill(5)}")
        if parsed is not None:
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    raise invalid(name, f"must be an ISO 8601 datetime, got {value!r}")
