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
from typing import Any, Final, NamedTuple

from shared.events import (
    Module,
)

ENTRY_NAMESPACE = uuid.UUID("7f1c1f3e-5a55-4d0c-9a3e-2b8e6c1d0a11")
HUNDREDTH = Decimal("0.01")


class Timelog(NamedTuple):
    """One current timelog, as aggregation reads it (a named tuple: one is made per event and per stored timelog a
    batch touches, and a frozen dataclass's construction cost several times more)."""

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


class EntryRef:
    """The identity of an entry: module, job site, day and the module's dimensions (MODULE_DIMS order). Immutable
    (its fields are `Final`) and hashed once: refs are dict keys all along the hot path, made by the hundred thousand,
    so this is a plain slotted class rather than a frozen dataclass, and its `key` is built only when asked for."""

    __slots__ = ("_hash", "_key", "dims", "job_site_id", "module", "work_date")

    def __init__(self, module: Module, job_site_id: str, work_date: date, dims: tuple[str | None, ...]) -> None:
        self.module: Final = module
        self.job_site_id: Final = job_site_id
        self.work_date: Final = work_date
        self.dims: Final = dims
        self._hash: Final = hash((module, job_site_id, work_date, dims))
        self._key: str | None = None

    @property
    def key(self) -> str:
        """`json.dumps([job_site, day, *dims], separators=(",", ":"))`, built without the generic encoder (hot)."""
        key = self._key
        if key is None:
            parts = [encode_basestring_ascii(self.job_site_id), f'"{self.work_date.isoformat()}"']
            parts += ["null" if d is None else encode_basestring_ascii(d) for d in self.dims]
            key = self._key = f"[{','.join(parts)}]"
        return key

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EntryRef):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.module is other.module
            and self.job_site_id == other.job_site_id
            and self.work_date == other.work_date
            and self.dims == other.dims
        )

    def __repr__(self) -> str:
        return f"EntryRef({self.module!r}, {self.job_site_id!r}, {self.work_date!r}, {self.dims!r})"

    def dims_dict(self) -> dict[str, str | None]:
        return dict(zip(MODULE_DIMS[self.module], self.dims, strict=True))


def entry_id(account_id: str, module: Module, key: str) -> uuid.UUID:
    """Deterministic, so a rebuild from the stored timelogs yields the very same entries."""
    return uuid5(f"{account_id}\x1f{module.value}\x1f{key}")


_ENTRY_IDS: dict[tuple[str, EntryRef], uuid.UUID] = {}
_ENTRY_IDS_KEPT = 200_000


def entry_id_of(entry: tuple[str, EntryRef]) -> uuid.UUID:
    """`entry_id` of an (account, entry), remembered: the hot path asks for the same recent entries again and again,
    and a SHA-1 and the entry's key per ask add up."""
    found = _ENTRY_IDS.get(entry)
    if found is None:
        if len(_ENTRY_IDS) >= _ENTRY_IDS_KEPT:
            _ENTRY_IDS.clear()
        account_id, ref = entry
        found = _ENTRY_IDS[entry] = entry_id(account_id, ref.module, ref.key)
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
    """The numbers users see (and Procore gets); None for an entry no timelog contributes to. Shared between entries
    with the same numbers: never changed in place."""
    return content_with_fingerprint(module, totals)[0]


def content_with_fingerprint(module: Module, totals: Totals) -> tuple[dict[str, str], str] | tuple[None, None]:
    """`content_of` and its `fingerprint`, remembered by the numbers they depend on (few distinct ones recur: 8.00
    hours, 3 workers)."""
    if totals.empty:
        return None, None
    if module is _MANPOWER:
        heads = len(totals.members)
        if heads == 0:
            raise ValueError("a manpower entry has timelogs but no employees: its totals drifted (run rebuild)")
        return _manpower_content(totals.seconds, heads)
    if module is _TIMECARD:
        return _timecard_content(totals.seconds)
    return _quantity_content(totals.units)


@functools.lru_cache(maxsize=65536)
def _manpower_content(seconds: int, heads: int) -> tuple[dict[str, str], str]:
    average = (Decimal(seconds) / Decimal(3600) / heads).quantize(HUNDREDTH, rounding=ROUND_HALF_UP)
    return _with_fingerprint({"average_hours": str(average), "manpower": str(heads), "total_hours": hours(seconds)})


@functools.lru_cache(maxsize=65536)
def _timecard_content(seconds: int) -> tuple[dict[str, str], str]:
    return _with_fingerprint({"hours": hours(seconds)})


@functools.lru_cache(maxsize=65536)
def _quantity_content(units: Decimal) -> tuple[dict[str, str], str]:
    return _with_fingerprint({"units": _units(units)})


def _with_fingerprint(content: dict[str, str]) -> tuple[dict[str, str], str]:
    return content, fingerprint(content)


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
