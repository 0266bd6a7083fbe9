"""Which dead letters `list` and `replay` act on, how `list` shows them and what a replay would send (pure rules)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.dead_letters.letters import DeadLetter


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command acts on."""

    reason_contains: str | None = None
    source_topic: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    positions: frozenset[str] = field(default_factory=frozenset)
    """`partition:offset` in the dead-letter topic; empty: any."""
    limit: int | None = None

    def matches(self, letter: DeadLetter, now: datetime) -> bool:
        age = now - letter.at
        return (
            (self.reason_contains is None or self.reason_contains.lower() in letter.reason.lower())
            and (self.source_topic is None or letter.source_topic == self.source_topic)
            and (self.older_than is None or age >= self.older_than)
            and (self.newer_than is None or age <= self.newer_than)
            and (not self.positions or letter.position in self.positions)
        )

    def apply(self, letters: Iterable[DeadLetter], now: datetime) -> list[DeadLetter]:
        chosen = [letter for letter in letters if self.matches(letter, now)]
        return chosen[: self.limit] if self.limit is not None else chosen


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `2h`, `3d`, `1w` → a timedelta."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 2h, 3d)")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_positions(text: str | None) -> frozenset[str]:
    """`0:12,0:13,2:5` → {"0:12", "0:13", "2:5"}."""
    if not text:
        return frozenset()
    found = set()
    for part in text.split(","):
        partition, sep, offset = part.strip().partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"not a partition:offset: {part.strip()!r}")
        found.add(f"{int(partition)}:{int(offset)}")
    return frozenset(found)


def human_age(age: timedelta) -> str:
    seconds = max(int(age.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def table(letters: Sequence[DeadLetter], replayed: set[str], now: datetime, reason_width: int = 70) -> str:
    """A readable, aligned table: one dead letter per line."""
    header = ("SERVICE", "POSITION", "AGE", "SIZE", "SOURCE", "REPLAYED", "REASON")
    rows = [
        (
            letter.service,
            letter.position,
            human_age(now - letter.at),
            human_size(letter.size) + (" (omitted)" if letter.omitted else ""),
            letter.source,
            "yes" if letter.source in replayed else "",
            _shorten(letter.reason, reason_width),
        )
        for letter in letters
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return "\n".join(line.rstrip() for line in lines)


def _shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclass
class ReplayReport:
    sent: list[DeadLetter] = field(default_factory=list)
    already: list[DeadLetter] = field(default_factory=list)
    omitted: list[DeadLetter] = field(default_factory=list)


def plan_replay(chosen: Sequence[DeadLetter], replayed: set[str]) -> ReplayReport:
    """What a replay would do: send each source record once; never what was sent before or was omitted."""
    plan = ReplayReport()
    planned: set[str] = set()
    for letter in chosen:
        if letter.omitted:
            plan.omitted.append(letter)
        elif letter.source in replayed or letter.source in planned:
            plan.already.append(letter)
        else:
            planned.add(letter.source)
            plan.sent.append(letter)
    return plan
