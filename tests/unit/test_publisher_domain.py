"""Pure publishing decisions: what Procore can take, conflicts, finding our own record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.publisher.domain import (
    CHANGED_IN_PROCORE,
    DELETED_IN_PROCORE,
    RESOURCES,
    Resource,
    Step,
    decide,
    find_own,
    prepare,
    record_matches,
)
from shared.events import Module, ProcoreOperation

MARKER = "[mc:0123456789abcdef]"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
MANPOWER = RESOURCES[Module.MANPOWER]


def record(**fields: object) -> dict[str, object]:
    return {"id": 7, "updated_at": "2026-11-20T08:00:00.000000Z", **fields}


# --- prepare: Procore's quirks, never rounded ------------------------------------------


def test_hours_become_strings_and_the_marker_is_kept() -> None:
    body, problem = prepare(Module.MANPOWER, {"num_workers": 3, "num_hours": 8.5, "notes": "Framers"}, MARKER)
    assert problem is None
    assert body == {"num_workers": 3, "num_hours": "8.5", "notes": f"Framers {MARKER}"}
    body, _ = prepare(Module.TIMECARD, {"hours": "7.50", "party_id": 1}, MARKER)
    assert body["hours"] == "7.50"
    assert body["origin_data"] == MARKER
    assert "time_in" not in body
    assert "lunch_time" not in body


@pytest.mark.parametrize(
    ("module", "payload", "reason"),
    [
        (Module.PRODUCTION_QUANTITY, {"quantity": "2.5", "unit": "m3"}, "Procore takes whole quantities only; 2.5 m3"),
        (Module.PRODUCTION_QUANTITY, {"quantity": 2.0001}, "is fractional"),
        (Module.TIMECARD, {"hours": "24.01", "party_id": 1}, "at most 24 hours in one timecard entry"),
        (Module.TIMECARD, {"party_id": 1}, "needs the timecard hours"),
        (Module.TIMECARD, {"hours": "8", "origin_id": "abc"}, "origin_id is an integer"),
        (Module.MANPOWER, {"num_workers": 2.5}, "whole, non-negative number of workers"),
        (Module.MANPOWER, {"num_hours": "eight"}, "hours per worker as a number"),
    ],
)
def test_values_procore_cannot_take_are_refused_with_a_reason(
    module: Module, payload: dict[str, object], reason: str
) -> None:
    _, problem = prepare(module, payload, MARKER)
    assert problem is not None
    assert reason in problem


def test_whole_quantities_written_as_text_are_taken() -> None:
    body, problem = prepare(Module.PRODUCTION_QUANTITY, {"quantity": "12.000", "unit": "m3"}, MARKER)
    assert problem is None
    assert body["quantity"] == 12


# --- content comparison -----------------------------------------------------------------


def test_record_matches_compares_what_we_write_in_procore_shapes() -> None:
    payload = {"num_workers": 3, "num_hours": "8.00", "contact_id": 5, "notes": f"x {MARKER}", "date": "2026-11-20"}
    same = record(
        num_workers=3, num_hours="8.0", vendor={"id": 5, "name": "Acme"}, notes=f"x {MARKER}", date="2026-11-20"
    )
    assert record_matches(MANPOWER, same, payload)
    assert not record_matches(MANPOWER, {**same, "num_workers": 4}, payload)
    assert not record_matches(MANPOWER, {**same, "vendor": {"id": 6}}, payload)


# --- decide -----------------------------------------------------------------------------


def judge(operation: ProcoreOperation, current: dict[str, object] | None, **kw: Any) -> tuple[Step, str | None]:
    options: dict[str, Any] = {
        "resource": MANPOWER,
        "published_updated_at": T0,
        "published_payload": None,
        "payload": {"num_workers": 3},
        "recovering": False,
    } | kw
    return decide(operation, current, **options)


def test_untouched_record_is_written() -> None:
    for op in (ProcoreOperation.UPDATE, ProcoreOperation.DELETE, ProcoreOperation.REPLACE):
        assert judge(op, record()) == (Step.WRITE, None)


def test_edited_record_is_a_conflict() -> None:
    edited = record(updated_at="2026-11-20T09:30:00Z")
    for op in (ProcoreOperation.UPDATE, ProcoreOperation.DELETE, ProcoreOperation.REPLACE):
        assert judge(op, edited) == (Step.CONFLICT, CHANGED_IN_PROCORE)


def test_without_a_baseline_time_content_decides() -> None:
    current = record(num_workers=3, notes="changed")
    published = {"num_workers": 3, "notes": MARKER}
    assert judge(ProcoreOperation.UPDATE, current, published_updated_at=None, published_payload=published) == (
        Step.CONFLICT,
        CHANGED_IN_PROCORE,
    )
    unchanged = record(num_workers=3, notes=MARKER)
    assert judge(ProcoreOperation.UPDATE, unchanged, published_updated_at=None, published_payload=published)[0] is (
        Step.WRITE
    )


def test_record_deleted_in_procore() -> None:
    assert judge(ProcoreOperation.UPDATE, None) == (Step.CONFLICT, DELETED_IN_PROCORE)
    assert judge(ProcoreOperation.REPLACE, None) == (Step.CONFLICT, DELETED_IN_PROCORE)
    assert judge(ProcoreOperation.DELETE, None) == (Step.GONE, None)
    # our own interrupted replace deleted it: go on creating
    assert judge(ProcoreOperation.REPLACE, None, recovering=True) == (Step.CREATE, None)
    assert judge(ProcoreOperation.UPDATE, None, deleted_by_us=True) == (Step.CREATE, None)


def test_recovering_update_adopts_our_own_landed_patch() -> None:
    ours = record(updated_at="2026-11-20T09:30:00Z", num_workers=5)
    assert judge(ProcoreOperation.UPDATE, ours, payload={"num_workers": 5}, recovering=True) == (Step.ADOPT, None)
    assert judge(ProcoreOperation.UPDATE, ours, payload={"num_workers": 5})[0] is Step.CONFLICT


# --- find_own ---------------------------------------------------------------------------


def found_id(resource: Resource, records: list[dict[str, Any]], payload: dict[str, Any]) -> object:
    found = find_own(resource, records, MARKER, payload)
    assert found is not None
    return found["id"]


def test_find_own_by_origin_id_then_marker() -> None:
    timecards = RESOURCES[Module.TIMECARD]
    records: list[dict[str, Any]] = [
        {"id": 1, "origin_id": 41},
        {"id": 2, "origin_id": 42},
        {"id": 3, "description": MARKER},
    ]
    assert found_id(timecards, records, {"origin_id": 42}) == 2
    assert found_id(timecards, records, {"origin_id": 43}) == 3
    logs: list[dict[str, Any]] = [{"id": 4, "notes": "Framers"}, {"id": 5, "notes": f"Framers {MARKER}"}]
    assert found_id(MANPOWER, logs, {}) == 5
    assert find_own(MANPOWER, logs[:1], MARKER, {}) is None
