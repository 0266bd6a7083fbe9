"""Aggregation: the current timelogs of some (job site, day) groups → the entries of the enabled modules, their
ids, totals, content and fingerprint. The result must equal a from-scratch recompute, whatever the event order."""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from json.encoder import encode_basestring_ascii
from typing import Any

from shared.events import (
    Module,
)

ENTRY_NAMESPACE = uuid.UUID("7f1c1f3e-5a55-4d0c-9a3e-2b8e6c1d0a11")
HUNDREDTH = Decimal("0.01")


@dataclass(frozen=True)
class Timelog:
    timelog_id: str
    employee_id: str
    company_id: str
    crew_tag: str | None
    job_site_id: str
    work_date: date
    seconds: int
    cost_code_id: str | None
    pay_class_id: str | None
    pay_id: str
    quantities: tuple[tuple[str, str, Decimal], ...] = ()


MODULE_DIMS: dict[Module, tuple[str, ...]] = {
    Module.MANPOWER: ("company_id", "crew_tag"),
    Module.TIMECARD: ("employee_id", "pay_id", "cost_code_id", "pay_class_id"),
    Module.PRODUCTION_QUANTITY: ("cost_code_id", "unit_of_measure"),
}


@dataclass(frozen=True)
class EntryRef:
    """The identity of an entry: module, job site, day and the module's dimensions (MODULE_DIMS order)."""

    module: Module
    job_site_id: str
    work_date: date
    dims: tuple[str | None, ...]
    key: str = field(init=False, compare=False, repr=False)
    """`json.dumps([job_site, day, *dims], separators=(",", ":"))`, built without the generic encoder (hot)."""
    _hash: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        parts = [encode_basestring_ascii(self.job_site_id), f'"{self.work_date.isoformat()}"']
        parts += ["null" if d is None else encode_basestring_ascii(d) for d in self.dims]
        object.__setattr__(self, "key", f"[{','.join(parts)}]")
        object.__setattr__(self, "_hash", hash((self.module, self.job_site_id, self.work_date, self.dims)))

    def __hash__(self) -> int:  # refs are dict keys all along the hot path: hash once
        return self._hash

    def dims_dict(self) -> dict[str, str | None]:
        return dict(zip(MODULE_DIMS[self.module], self.dims, strict=True))


_ENTRY_IDS: dict[tuple[str, Module, str], uuid.UUID] = {}
_ENTRY_IDS_KEPT = 200_000


def entry_id(account_id: str, module: Module, key: str) -> uuid.UUID:
    """Deterministic, so a rebuild from the stored timelogs yields the very same entries (remembered: the hot
    path asks for the same recent entries again and again, and a SHA-1 per ask adds up)."""
    found = _ENTRY_IDS.get((account_id, module, key))
    if found is None:
        if len(_ENTRY_IDS) >= _ENTRY_IDS_KEPT:
            _ENTRY_IDS.clear()
        found = _ENTRY_IDS[(account_id, module, key)] = uuid5(f"{account_id}\x1f{module.value}\x1f{key}")
    return found


_NAMESPACE_BYTES = ENTRY_NAMESPACE.bytes
_VERSION_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_VERSION_5 = (0x8000 << 48) | (5 << 76)
_new_uuid = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown


def uuid5(name: str) -> uuid.UUID:
    """`uuid.uuid5(ENTRY_NAMESPACE, name)`, the same value, without `UUID.__init__`'s argument checks (hot: one per
    entry a batch creates)."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    made = _new_uuid(uuid.UUID)
    _set(made, "int", (int.from_bytes(digest[:16]) & _VERSION_CLEAR) | _VERSION_5)
    _set(made, "is_safe", _UNKNOWN)
    return made


@dataclass
class Totals:
    """What an entry adds up; kept so each change applies as a delta (and equals a recompute)."""

    seconds: int = 0
    units: Decimal = Decimal(0)
    contributions: int = 0
    members: dict[str, int] = field(default_factory=dict)
    """Manpower only: timelogs per employee, so head count stays exact under deletes and moves."""

    @property
    def empty(self) -> bool:
        return self.contributions == 0

    def add(self, seconds: int, units: Decimal, member: str | None, sign: int) -> None:
        self.seconds += sign * seconds
        self.units += sign * units
        self.contributions += sign
        if member is not None:
            count = self.members.get(member, 0) + sign
            if count == 0:
                del self.members[member]
            else:
                self.members[member] = count

    def merged(self, delta: Totals) -> Totals:
        """These totals with a delta applied (members that drop to zero leave)."""
        members = self.members
        if delta.members:
            members = self.members.copy()
            for member, change in delta.members.items():
                count = members.get(member, 0) + change
                if count <= 0:
                    members.pop(member, None)
                else:
                    members[member] = count
        return Totals(
            self.seconds + delta.seconds,
            self.units + delta.units,
            self.contributions + delta.contributions,
            members,
        )


Contribution = tuple[EntryRef, int, Decimal, str | None]
"""(entry, seconds, units, member) that one timelog adds to one entry."""


_MANPOWER, _TIMECARD = Module.MANPOWER, Module.TIMECARD
_NO_UNITS = Decimal(0)


def contributions(t: Timelog, modules: Iterable[Module]) -> list[Contribution]:
    """Every entry a timelog counts towards, for the enabled modules."""
    out: list[Contribution] = []
    for module in modules:
        if module is _MANPOWER:
            ref = EntryRef(module, t.job_site_id, t.work_date, (t.company_id, t.crew_tag))
            out.append((ref, t.seconds, _NO_UNITS, t.employee_id))
        elif module is _TIMECARD:
            dims = (t.employee_id, t.pay_id, t.cost_code_id, t.pay_class_id)
            out.append((EntryRef(module, t.job_site_id, t.work_date, dims), t.seconds, _NO_UNITS, None))
        else:
            for cost_code_id, unit, units in t.quantities:
                ref = EntryRef(module, t.job_site_id, t.work_date, (cost_code_id, unit))
                out.append((ref, 0, units, None))
    return out


@functools.lru_cache(maxsize=65536)
def hours(seconds: int) -> str:
    """Seconds as hours to the hundredth, rounded half up, as text (remembered: few distinct durations recur)."""
    return str((Decimal(seconds) / Decimal(3600)).quantize(HUNDREDTH, rounding=ROUND_HALF_UP))


def _units(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def content_of(module: Module, totals: Totals) -> dict[str, str] | None:
    """The numbers users see (and Procore gets); None for an entry no timelog contributes to."""
    if totals.empty:
        return None
    if module is _MANPOWER:
        heads = len(totals.members)
        if heads == 0:
            raise ValueError("a manpower entry has timelogs but no employees: its totals drifted (run rebuild)")
        average = (Decimal(totals.seconds) / Decimal(3600) / heads).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)
        return {"average_hours": str(average), "manpower": str(heads), "total_hours": hours(totals.seconds)}
    if module is _TIMECARD:
        return {"hours": hours(totals.seconds)}
    return {"units": _units(totals.units)}


def fingerprint(content: Mapping[str, Any]) -> str:
    """A canonical, compact rendering of the content: equal content, equal fingerprint."""
    return ";".join(f"{k}={content[k]}" for k in sorted(content))


def aggregate(timelogs: Iterable[Timelog], modules: Iterable[Module]) -> dict[EntryRef, Totals]:
    """From scratch: the entries of the enabled modules for exactly these (current) timelogs."""
    enabled = list(modules)
    out: dict[EntryRef, Totals] = defaultdict(Totals)
    for t in timelogs:
        for ref, seconds, units, member in contributions(t, enabled):
            out[ref].add(seconds, units, member, +1)
    return dict(out)
