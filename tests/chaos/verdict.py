"""The invariants, as pure functions over what was sent, what the gateway shows and what Procore holds.

Each check adds counts (and a few examples) to a `Tally`; a scenario passes when every count is zero.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.chaos.oracle import DIMS, EntryKey, Expected
from tests.chaos.plan import MANPOWER, PRODUCTION_QUANTITY, TIMECARD, AccountPlan
from tests.chaos.readback import SeenEntry

RECORD_KINDS = {MANPOWER: "manpower_logs", TIMECARD: "timecard_entries", PRODUCTION_QUANTITY: "quantity_logs"}
MODULE_OF_KIND = {kind: module for module, kind in RECORD_KINDS.items()}
OUR_CLIENT = "sandbox-client"
SETTLED = {"published", "failed", "non_publishable"}

# What each count means (the report prints these).
VIOLATIONS: dict[str, str] = {
    "wrong": "entries whose numbers differ from the recompute",
    "lost": "entries the recompute has that the system does not show",
    "unexpected": "entries the system shows that the recompute does not have",
    "np_wrong": "entries Non publishable when all their mappings exist, or publishable when one is missing",
    "stuck_publishing": "entries still Publishing after the settle time",
    "not_published": "publishable entries still To do, Updated or Deleted after the final publish",
    "failed_no_reason": "Failed entries without a reason",
    "false_conflict": "entries Failed as changed/deleted in Procore although nobody touched their record",
    "procore_duplicates": "live Procore records beyond one per entry (same record text as another)",
    "procore_orphans": "live Procore records no entry points at (e.g. not deleted with their entry)",
    "procore_missing": "Published entries whose Procore record is gone (not deleted by a Procore user)",
    "procore_mismatch": "Published entries whose Procore record holds other values",
    "edits_overwritten": "Procore-side edits or deletes undone without a force publish",
    "poison_not_dead_lettered": "rejected messages missing from every dead-letter topic (or without reason)",
    "valid_dead_lettered": "valid messages the suite sent that were dead-lettered",
    "internal_dead_lettered": "messages the services sent each other that were dead-lettered",
    "dead_letter_copies": "copies of one dead letter beyond two (a dead-letter loop)",
}


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VIOLATIONS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)

    def add(self, what: str, example: str, n: int = 1) -> None:
        self.counts[what] += n
        if len(self.examples[what]) < 5:
            self.examples[what].append(example)

    @property
    def violations(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class HumanTouch:
    """A Procore user edited (fields) or deleted (fields None) one of our records."""

    kind: str
    record_id: int
    project_id: int
    day: str
    text: str
    fields: dict[str, Any] | None
    at: float


@dataclass(frozen=True)
class IssuedCommand:
    account_id: str
    module: str
    action: str
    scope: dict[str, Any]
    at: float
    via: str

    def covers(self, module: str, site: str, day: str) -> bool:
        if module != self.module:
            return False
        if self.scope["kind"] == "cell":
            return bool(self.scope["job_site_id"] == site and self.scope["work_date"] == day)
        if self.scope["kind"] == "date_range":
            return bool(self.scope["date_from"] <= day <= self.scope["date_to"])
        return False


def _short(key: EntryKey) -> str:
    module, site, day, dims = key
    return f"{module} {site} {day} {'/'.join(str(d) for d in dims)}"


# --- entries ---------------------------------------------------------------------------------------


def check_entries(
    tally: Tally, expected: dict[EntryKey, Expected], seen: list[SeenEntry], after_final_publish: bool
) -> None:
    """Every entry equals the recompute; statuses are where they must be."""
    by_key: dict[EntryKey, list[SeenEntry]] = defaultdict(list)
    for e in seen:
        by_key[e.key].append(e)
    for key, want in expected.items():
        found = by_key.get(key)
        if not found:
            tally.add("lost", _short(key))
            continue
        e = found[0]
        problems = want.value_problems(e.row)
        np_expected = not want.publishable
        if problems:
            tally.add("wrong", f"{_short(key)} [{e.status}]: {'; '.join(problems)}")
        elif e.status == "non_publishable" and not np_expected:
            tally.add("np_wrong", f"{_short(key)} Non publishable: {e.row.get('errors')}")
        elif np_expected and e.status != "non_publishable" and not (want.fractional and e.status == "failed"):
            tally.add("np_wrong", f"{_short(key)} is {e.status} but {', '.join(want.blockers)}")
        _check_status(tally, e, after_final_publish, np_expected)
    for key, found in by_key.items():
        extra = found[1:] if key in expected else found
        for e in extra:
            # No timelog left, but published once: Deleted until its Procore record is deleted (Publishing
            # while that runs), or Failed when the delete was refused (a Procore user changed the record).
            pending_delete = e.status in ("failed", "publishing") or (e.status == "deleted" and not after_final_publish)
            if key not in expected and emptied(e) and pending_delete:
                _check_status(tally, e, after_final_publish, np_expected=False)
                continue
            tally.add("unexpected", f"{_short(key)} [{e.status}] {e.row}")


def emptied(e: SeenEntry) -> bool:
    """The entry shows no numbers (no timelog contributes to it any more)."""
    numbers = ("manpower", "total_hours", "timelog_duration", "unit")
    return not any(e.row.get(name) not in (None, 0, "0", "0.00") for name in numbers)


def _check_status(tally: Tally, e: SeenEntry, after_final_publish: bool, np_expected: bool) -> None:
    where = f"{_short(e.key)} ({e.entry_id})"
    if e.status == "publishing":
        tally.add("stuck_publishing", where)
    if e.status == "failed" and not e.last_error:
        tally.add("failed_no_reason", where)
    if after_final_publish and not np_expected and e.status not in {*SETTLED, "publishing"}:
        tally.add("not_published", f"{where} is {e.status}")


# --- Procore ---------------------------------------------------------------------------------------


def record_text(kind: str, record: dict[str, Any]) -> str:
    """The free text our marker lives in: a record's identity across re-creation, without parsing it."""
    if kind == "manpower_logs":
        return str(record.get("notes") or "")
    if kind == "timecard_entries":
        return str(record.get("origin_data") or record.get("description") or "")
    return str(record.get("description") or "")


def _ref_id(record: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = record.get(name)
        if isinstance(value, dict) and value.get("id") is not None:
            return int(value["id"])
    return None


def _dec(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def record_problems(plan: AccountPlan, key: EntryKey, row: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """How a Procore record differs from the entry the gateway shows as Published (its key and numbers).

    Held to the entry's own numbers, not the recompute's: a wrong entry is counted once, as wrong; this
    checks that what the system says it published is what Procore holds.
    """
    ids = plan.procore
    assert ids is not None
    module, site, day, dims = key
    named = dict(zip(DIMS[module], dims, strict=True))
    problems = []

    def expect(name: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"{name} {actual} ≠ {wanted}")

    expect("date", record.get("date"), day)
    expect("project", record.get("project_id"), ids.projects.get(site))
    if module == MANPOWER:
        expect("num_workers", _dec(record.get("num_workers")), _dec(row.get("manpower")))
        expect("num_hours", _dec(record.get("num_hours")), _dec(row.get("average")))
        expect("vendor", _ref_id(record, "vendor", "contact"), ids.vendors.get(str(named["company_id"])))
        if named["crew_tag"] and str(named["crew_tag"]) not in str(record.get("notes") or ""):
            problems.append(f"crew {named['crew_tag']} not in notes {record.get('notes')!r}")
    elif module == TIMECARD:
        expect("hours", _dec(record.get("hours")), _dec(row.get("timelog_duration")))
        expect("party", _ref_id(record, "party"), ids.people.get(str(named["employee_id"])))
        expect("time type", _ref_id(record, "timecard_time_type"), ids.time_types.get(str(named["pay_id"])))
        cc = named["cost_code_id"]
        expect("cost code", _ref_id(record, "cost_code"), ids.cost_codes.get((site, str(cc))) if cc else None)
    else:
        expect("quantity", _dec(record.get("quantity")), _dec(row.get("unit")))
        expect("unit", record.get("unit"), named["unit_of_measure"])
        expect("cost code", _ref_id(record, "cost_code"), ids.cost_codes.get((site, str(named["cost_code_id"]))))
    return problems


FORCE_GRACE_S = 10.0
"""A force publish sent this long before a Procore user's edit may still be on its way when the edit lands:
it may overwrite the edit too (never a false alarm; an overwrite within this window goes unseen)."""


def _forced_after(
    commands: Iterable[IssuedCommand], account: str, module: str, site: str | None, day: str, at: float
) -> bool:
    return any(
        c.action == "force_publish"
        and c.account_id == account
        and c.at > at - FORCE_GRACE_S
        and site is not None
        and c.covers(module, site, day)
        for c in commands
    )


def check_procore(  # noqa: C901 - one check per invariant of Procore's records
    tally: Tally,
    plan: AccountPlan,
    seen: list[SeenEntry],
    records: dict[str, list[dict[str, Any]]],
    touches: list[HumanTouch],
    commands: list[IssuedCommand],
) -> None:
    """One live record per Published entry, with its values; none extra; Procore users' edits kept."""
    ids = plan.procore
    assert ids is not None
    site_of_project = {p: s for s, p in ids.projects.items()}
    by_id = {(kind, int(r["id"])): r for kind, rs in records.items() for r in rs}
    touched = {(t.kind, t.record_id): t for t in touches}
    referenced: set[tuple[str, int]] = set()

    def forced_since(t: HumanTouch) -> bool:
        module = MODULE_OF_KIND[t.kind]
        return _forced_after(commands, plan.account_id, module, site_of_project.get(t.project_id), t.day, t.at)

    for e in seen:
        if e.procore_id is None:
            continue
        kind = RECORD_KINDS[e.key[0]]
        referenced.add((kind, e.procore_id))
        record = by_id.get((kind, e.procore_id))
        touch = touched.get((kind, e.procore_id))
        if record is None or record.get("deleted"):
            if e.status in ("published", "updated") and not (touch is not None and touch.fields is None):
                tally.add("procore_missing", f"{_short(e.key)} → {kind}/{e.procore_id} is gone")
            continue
        if e.status != "published" or (touch is not None and not forced_since(touch)):
            continue
        problems = record_problems(plan, e.key, e.row, record)
        if problems:
            tally.add("procore_mismatch", f"{_short(e.key)} → {kind}/{e.procore_id}: {'; '.join(problems)}")

    referenced_texts = {
        (kind, r.get("project_id"), r.get("date"), record_text(kind, r))
        for (kind, rid), r in by_id.items()
        if (kind, rid) in referenced
    }
    for (kind, rid), r in by_id.items():
        if r.get("deleted") or (kind, rid) in referenced or r.get("created_by_client_id") != OUR_CLIENT:
            continue
        identity = (kind, r.get("project_id"), r.get("date"), record_text(kind, r))
        what = "procore_duplicates" if identity in referenced_texts else "procore_orphans"
        tally.add(what, f"{kind}/{rid} {r.get('date')} project {r.get('project_id')} {identity[3]!r}")

    for t in touches:
        if forced_since(t):
            continue
        record = by_id.get((t.kind, t.record_id))
        if t.fields is not None:
            if record is None or record.get("deleted"):
                continue
            for name, value in t.fields.items():
                if _dec(record.get(name)) != _dec(value):
                    tally.add(
                        "edits_overwritten", f"{t.kind}/{t.record_id}.{name} = {record.get(name)}, user set {value}"
                    )
        else:
            again = [
                r
                for (kind, rid), r in by_id.items()
                if kind == t.kind
                and rid != t.record_id
                and not r.get("deleted")
                and r.get("project_id") == t.project_id
                and r.get("date") == t.day
                and record_text(kind, r) == t.text
                and t.text
            ]
            for r in again:
                tally.add("edits_overwritten", f"{t.kind}/{t.record_id} deleted by a user, re-created as {r['id']}")


def check_conflicts(tally: Tally, seen: list[SeenEntry], touches: list[HumanTouch]) -> None:
    """Failed as changed (or deleted) in Procore is right only for records a Procore user touched."""
    touched_ids = {t.record_id for t in touches}
    for e in seen:
        reason = (e.last_error or "").lower()
        blames_procore = "changed in procore" in reason or "deleted in procore" in reason
        if e.status == "failed" and blames_procore and e.procore_id not in touched_ids:
            tally.add("false_conflict", f"{_short(e.key)} ({e.entry_id}): {e.last_error}")


# --- dead letters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    source: tuple[str, int, int] | None
    reason: str
    event_id: str | None


def dead_letter_of(record: Any) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    source = None
    if "x-dead-letter-source-topic" in headers:
        try:
            source = (
                headers["x-dead-letter-source-topic"],
                int(headers.get("x-dead-letter-source-partition", "-1")),
                int(headers.get("x-dead-letter-source-offset", "-1")),
            )
        except ValueError:
            source = None
    event_id = None
    try:
        body = json.loads(record.value)
        if isinstance(body, dict) and isinstance(body.get("event_id"), str):
            event_id = body["event_id"]
    except (ValueError, TypeError):
        pass
    return DeadLetter(record.topic, source, headers.get("x-dead-letter-reason", ""), event_id)


@dataclass(frozen=True)
class SentMessage:
    label: str
    valid: bool
    event_id: str | None


def check_dead_letters(
    tally: Tally,
    letters: list[DeadLetter],
    sent_at: dict[tuple[str, int, int], SentMessage],
    poison: list[tuple[str, list[tuple[str, int, int]]]],
    valid_event_ids: set[str],
    tolerated_labels: set[str],
) -> int:
    """Every poison message dead-lettered with a reason, no valid one, no loop; returns poison dead-lettered."""
    copies: dict[tuple[str, tuple[str, int, int]], int] = defaultdict(int)
    reasons: dict[tuple[str, int, int], list[str]] = defaultdict(list)
    for d in letters:
        if d.source is not None:
            copies[(d.topic, d.source)] += 1
            reasons[d.source].append(d.reason)
        sent = sent_at.get(d.source) if d.source is not None else None
        if sent is not None and not sent.valid:
            continue
        if sent is not None and sent.label in tolerated_labels:
            tally.notes.append(f"{sent.label} message dead-lettered by {d.topic}: {d.reason[:120]}")
            continue
        if sent is not None or (d.event_id is not None and d.event_id in valid_event_ids):
            tally.add("valid_dead_lettered", f"{d.topic} {d.source}: {d.reason[:160]}")
        else:
            tally.add("internal_dead_lettered", f"{d.topic} {d.source}: {d.reason[:160]}")
    for (topic, source), n in copies.items():
        if n > 2:  # twice can be at-least-once after a crash; more is a loop
            tally.add("dead_letter_copies", f"{topic} has {n} copies of {source}", n - 1)
    delivered = 0
    for label, positions in poison:
        found = [r for p in positions for r in reasons.get(p, [])]
        if not found or not all(r.strip() for r in found):
            tally.add("poison_not_dead_lettered", f"{label} at {positions}: {found or 'no dead letter'}")
        else:
            delivered += 1
    return delivered


def entries_on(days: Iterable[date]) -> str:
    ds = sorted(days)
    return f"{ds[0]}…{ds[-1]}" if ds else "-"
