"""Week maths: weeks start on Monday. Pure."""

from __future__ import annotations

from datetime import date, timedelta


def week_of(day: date) -> date:
    """The Monday of the week `day` falls in."""
    return day - timedelta(days=day.weekday())


def week_days(week_start: date) -> list[date]:
    return [week_start + timedelta(days=i) for i in range(7)]
