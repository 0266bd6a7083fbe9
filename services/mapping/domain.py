"""Pure mapping rules: tabs per module, permissions, number normalization, auto-map, many-to-one.

No I/O. Rows come in as small dataclasses; decisions go out as dataclasses.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from shared import events
from shared.events import Permission, ProcoreEntity, permission_refusal
from shared.mapping_rules import (  # noqa: F401 - re-exported for the mapping service
    ENTITY_OF_KIND,
    MANY_TO_ONE,
    MOBICLOCKS_LABEL,
    NEEDS_MAPPED_PROJECT,
    NUMBER_FIELD,
    PROCORE_LABEL,
    PROJECT_SCOPED,
    TAB_LABEL,
    TABS_OF_MODULE,
    tabs_for,
    two_way_entity,
)


def refusal_for_permission(needed: Permission, permissions: Sequence[str] | None) -> str | None:
    """Why the requester may not do this, or None. Fail closed: no permissions list (None) is refused too; a
    back-end caller sends as a named system principal with its permissions (`shared.events.SystemPrincipal`)."""
    return permission_refusal(events.Permission(needed.value), permissions)


_SPACES = re.compile(r"\s+")


def normalize_number(value: str | None) -> str | None:
    """Numbers compare after trimming, collapsing inner whitespace to one space, and casefolding.

    "  03-300 " = "03-300", "p 100" = "P  100"; punctuation and leading zeros are kept ("03-300" ≠
    "03 300" ≠ "3-300"): they are part of the number in both systems.
    """
    if value is None:
        return None
    normalized = _SPACES.sub(" ", value.strip()).casefold()
    return normalized or None


# --- auto-map ------------------------------------------------------------------------------


class Source(StrEnum):
    MANUAL = "manual"
    AUTO = "auto"
    TWO_WAY = "two_way"


@dataclass(frozen=True)
class MobiClocksRow:
    entity_id: str
    name: str
    number: str | None


@dataclass(frozen=True)
class ProcoreRow:
    procore_id: int
    name: str
    number: str | None


@dataclass(frozen=True)
class CurrentMapping:
    procore_id: int
    source: Source


class Outcome(StrEnum):
    MAPPED = "mapped"
    SKIPPED = "skipped"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class RowDecision:
    mobiclocks_id: str
    outcome: Outcome
    reason: str
    procore_id: int | None = None


@dataclass(frozen=True)
class AutoMapPlan:
    decisions: list[RowDecision] = field(default_factory=list)

    @property
    def assignments(self) -> list[tuple[str, int]]:
        """(MobiClocks id, Procore id) pairs to store as `auto` mappings."""
        return [(d.mobiclocks_id, d.procore_id) for d in self.decisions if d.outcome is Outcome.MAPPED and d.procore_id]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for d in self.decisions if d.outcome is outcome)


def auto_map(
    entity: ProcoreEntity,
    mobiclocks: Sequence[MobiClocksRow],
    procore: Sequence[ProcoreRow],
    current: Mapping[str, CurrentMapping],
    overwrite_manual: bool = False,
) -> AutoMapPlan:
    """Decide, per MobiClocks row, whether equal numbers map it to one Procore entity.

    - mapped: exactly one Procore entity has the row's number (and, in one-to-one tabs, no other
      MobiClocks row has that number or already holds that entity);
    - ambiguous: several Procore entities share the number (or, one-to-one, several MobiClocks rows do):
      never guessed;
    - skipped: no number, no Procore entity with it, already mapped to it, or mapped by hand (kept
      unless `overwrite_manual`).
    """
    if NUMBER_FIELD[entity] is None:
        return AutoMapPlan([RowDecision(r.entity_id, Outcome.SKIPPED, "no Number field to match") for r in mobiclocks])
    by_number: dict[str, list[ProcoreRow]] = defaultdict(list)
    for p in procore:
        key = procore_key(entity, p)
        if key is not None:
            by_number[key].append(p)
    mc_by_number: dict[str, list[str]] = defaultdict(list)
    for r in mobiclocks:
        key = normalize_number(r.number)
        if key is not None:
            mc_by_number[key].append(r.entity_id)
    one_to_one = entity not in MANY_TO_ONE
    holder = {m.procore_id: mc_id for mc_id, m in current.items()}

    decisions: list[RowDecision] = []
    for row in sorted(mobiclocks, key=lambda r: r.entity_id):
        key = normalize_number(row.number)
        existing = current.get(row.entity_id)
        payroll = entity is ProcoreEntity.PAYROLL_TYPE
        matches = payroll_matches(row, by_number) if payroll else by_number.get(key or "", [])
        if not matches and key is None:
            decisions.append(RowDecision(row.entity_id, Outcome.SKIPPED, "has no number"))
            continue
        if not matches:
            decisions.append(RowDecision(row.entity_id, Outcome.SKIPPED, f"no Procore entity has number {row.number}"))
            continue
        if len(matches) > 1:
            ids = ", ".join(str(m.procore_id) for m in matches)
            decisions.append(
                RowDecision(
                    row.entity_id,
                    Outcome.AMBIGUOUS,
                    f"{len(matches)} Procore entities have number {row.number} ({ids})",
                )
            )
            continue
        if one_to_one and key is not None and len(mc_by_number[key]) > 1:
            others = ", ".join(i for i in mc_by_number[key] if i != row.entity_id)
            decisions.append(
                RowDecision(row.entity_id, Outcome.AMBIGUOUS, f"number {row.number} is shared with {others}")
            )
            continue
        target = matches[0]
        if existing is not None and existing.procore_id == target.procore_id:
            decisions.append(RowDecision(row.entity_id, Outcome.SKIPPED, "already mapped to it", target.procore_id))
            continue
        if existing is not None and existing.source is Source.MANUAL and not overwrite_manual:
            decisions.append(RowDecision(row.entity_id, Outcome.SKIPPED, "mapped by hand; kept"))
            continue
        if one_to_one and holder.get(target.procore_id, row.entity_id) != row.entity_id:
            decisions.append(
                RowDecision(
                    row.entity_id, Outcome.SKIPPED, f"{target.name} is already mapped from {holder[target.procore_id]}"
                )
            )
            continue
        if existing is not None:
            holder.pop(existing.procore_id, None)
        holder[target.procore_id] = row.entity_id
        decisions.append(RowDecision(row.entity_id, Outcome.MAPPED, f"number {row.number}", target.procore_id))
    return AutoMapPlan(decisions)


def procore_key(entity: ProcoreEntity, p: ProcoreRow) -> str | None:
    """What auto-map compares on Procore's side: the Number field. A payroll type's Number is its abbreviation
    (`abbreviated_time_type`), which Procore lists only per project (`/timecard_time_types?project_id=`); the
    company's list has nothing but `id` and `time_type` (spec: List Timecard Time Types). Synced from there, the
    time type is compared by its `time_type`, the only thing Procore said about it."""
    if entity is ProcoreEntity.PAYROLL_TYPE and normalize_number(p.number) is None:
        return normalize_number(p.name)
    return normalize_number(p.number)


def payroll_matches(row: MobiClocksRow, by_key: Mapping[str, Sequence[ProcoreRow]]) -> list[ProcoreRow]:
    """Procore time types whose key is the pay ID's Number, else (none has it) its name: "OT" finds the abbreviation
    OT, "Overtime" finds the time type Overtime when Procore gave no abbreviation."""
    for candidate in (row.number, row.name):
        key = normalize_number(candidate)
        if key is not None and by_key.get(key):
            return list(by_key[key])
    return []


def one_to_one_conflict(entity: ProcoreEntity, mobiclocks_id: str, holders: Iterable[str]) -> str | None:
    """The other MobiClocks row that already holds this Procore entity in a one-to-one tab, if any."""
    if entity in MANY_TO_ONE:
        return None
    return next((h for h in sorted(holders) if h != mobiclocks_id), None)


def cost_code_label(name: str, number: str | None) -> str:
    return f"{number} {name}" if number else name


REFRESH_BURNT: str = (
    "Procore no longer accepts this connection: a token refresh's answer was lost on the way from Procore, and "
    "Procore's refresh tokens work only once. Connect to Procore again (Setup → Connect) to resume publishing."
)
REFRESH_REFUSED: str = (
    "Procore no longer accepts this connection ({reason}): the access was revoked or has expired. Connect to "
    "Procore again (Setup → Connect) to resume publishing."
)


def reauthorization_message(procore_message: str, answer_lost: bool) -> str:
    """What Setup says when Procore refused to renew the connection: a burnt refresh token (an earlier refresh's
    answer was lost) says so; otherwise Procore's reason."""
    return REFRESH_BURNT if answer_lost else REFRESH_REFUSED.format(reason=procore_message.rstrip("."))


SERVICE_ACCOUNT_NEEDS_COMPANY: str = (
    "Procore asks service accounts to name their company: enter the Company ID in Procore beside the client ID and "
    "secret, and connect again"
)
