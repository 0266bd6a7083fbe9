"""Parsing of Procore query filters: ISO 8601 ranges (`a...b`), date params and id lists. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta


class FilterError(ValueError):
    """A malformed filter value; the app answers 400 naming the parameter."""


def parse_date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise FilterError(f"{name} must be a date in YYYY-MM-DD format, got {value!r}") from exc


def _parse_point(value: str, name: str, *, end: bool) -> datetime:
    value = value.strip()
    if len(value) == 10:
        day = parse_date(value, name)
        if end:
            return datetime.combine(day, time.max, tzinfo=UTC)
        return datetime.combine(day, time.min, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FilterError(f"{name} must be an ISO 8601 date or datetime, got {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_time_range(value: str, name: str) -> tuple[datetime, datetime]:
    """`start...end` (dates are whole days, datetimes carry Z or +HH:MM); a single value is its own range."""
    if "..." in value:
        start_raw, end_raw = value.split("...", 1)
    else:
        start_raw = end_raw = value
    start = _parse_point(start_raw, name, end=False)
    end = _parse_point(end_raw, name, end=True)
    if end < start:
        raise FilterError(f"{name}: range end is before its start")
    return start, end


def daily_log_range(
    log_date: str | None, start_date: str | None, end_date: str | None, today: date
) -> tuple[date, date]:
    """Daily Log date semantics: log_date, or start_date+end_date, else today's records only."""
    if log_date:
        day = parse_date(log_date, "log_date")
        return day, day
    if start_date or end_date:
        start = parse_date(start_date, "start_date") if start_date else None
        end = parse_date(end_date, "end_date") if end_date else None
        first = start or end
        last = end or start
        assert first is not None
        assert last is not None
        if last < first:
            raise FilterError("end_date is before start_date")
        if (last - first) > timedelta(days=366 * 5):
            raise FilterError("date range too large")
        return first, last
    return today, today


def parse_id_list(values: Sequence[str], name: str) -> set[int]:
    """`filters[x]=1`, `filters[x][]=1&filters[x][]=2` or `filters[x]=1,2`."""
    ids: set[int] = set()
    for raw in values:
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                ids.add(int(part))
            except ValueError as exc:
                raise FilterError(f"{name} must be a list of integers, got {raw!r}") from exc
    return ids


def parse_bool(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.strip().lower() in ("true", "1", "t", "yes")
