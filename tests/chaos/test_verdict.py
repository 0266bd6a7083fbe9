"""The invariant checks, on hand-made system answers (pure, fast): each one can fail."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from tests.chaos.oracle import Oracle
from tests.chaos.plan import AccountPlan, ProcoreIds, Shape
from tests.chaos.readback import SeenEntry
from tests.chaos.test_oracle import upsert
from tests.chaos.verdict import (
    DeadLetter,
    HumanTouch,
    IssuedCommand,
    SentMessage,
    Tally,
    check_conflicts,
    check_dead_letters,
    check_entries,
    check_procore,
)

DAY = "2026-03-02"


def plan() -> AccountPlan:
    p = AccountPlan("acc", Shape(sites=3, employees=4, cost_codes=3, days=2), (date(2026, 3, 2), date(2026, 3, 3)))
    p.procore = ProcoreIds(
        company_id=1,
        projects={"site-0": 100, "site-1": 101},
        cost_codes={("site-0", "cc-0"): 200},
        vendors={"co-0": 300, "co-1": 301},
        people={"emp-0": 400},
        time_types={"REG": 500, "OT": 501},
    )
    return p


def timecard(status: str, hours: str | None, procore_id: int | None = None, **row: Any) -> SeenEntry:
    key = ("timecard", "site-0", DAY, ("emp-0", "REG", "cc-0", None))
    return SeenEntry("e1", key, status, {"timelog_duration": hours, **row}, procore_id, 1)


def record(rid: int, hours: str = "1.00", **fields: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "date": DAY,
        "project_id": 100,
        "hours": hours,
        "party": {"id": 400},
        "timecard_time_type": {"id": 500},
        "cost_code": {"id": 200},
        "origin_data": f"[mc:{rid}]",
        "deleted": False,
        "created_by_client_id": "sandbox-client",
        **fields,
    }


def expected() -> dict[Any, Any]:
    oracle = Oracle([plan()])
    oracle.observe(upsert("t1", 1))
    return {k: e for k, e in oracle.entries("acc").items() if k[0] == "timecard"}


def test_a_right_published_entry_passes() -> None:
    tally = Tally()
    check_entries(tally, expected(), [timecard("published", "1.00", 7)], after_final_publish=True)
    check_procore(tally, plan(), [timecard("published", "1.00", 7)], {"timecard_entries": [record(7)]}, [], [])
    assert tally.violations == 0, tally.examples


def test_wrong_lost_unexpected_and_stuck_entries_are_counted() -> None:
    tally = Tally()
    check_entries(tally, expected(), [timecard("publishing", "2.00")], after_final_publish=True)
    assert tally.counts["wrong"] == 1
    assert tally.counts["stuck_publishing"] == 1
    tally = Tally()
    stray = SeenEntry("e2", ("timecard", "site-1", DAY, ("emp-0", "REG", None, None)), "todo", {}, None, 1)
    stray.row["timelog_duration"] = "3.00"
    check_entries(tally, expected(), [stray], after_final_publish=True)
    assert tally.counts["lost"] == 1
    assert tally.counts["unexpected"] == 1


def test_an_emptied_entry_whose_delete_was_refused_is_not_unexpected() -> None:
    tally = Tally()
    gone = SeenEntry(
        "e3",
        ("timecard", "site-1", DAY, ("emp-0", "OT", None, None)),
        "failed",
        {"timelog_duration": None, "last_error": "changed in Procore since it was published"},
        9,
        2,
    )
    check_entries(tally, {}, [gone], after_final_publish=True)
    assert tally.violations == 0
    check_conflicts(tally, [gone], [])
    assert tally.counts["false_conflict"] == 1


def test_publishable_entries_left_to_do_after_the_final_publish_are_counted() -> None:
    tally = Tally()
    check_entries(tally, expected(), [timecard("todo", "1.00")], after_final_publish=True)
    assert tally.counts["not_published"] == 1


def test_procore_duplicates_orphans_missing_and_mismatches() -> None:
    tally = Tally()
    seen = [timecard("published", "1.00", 7)]
    records = {"timecard_entries": [record(7, "1.50"), record(8, origin_data="[mc:7]"), record(9)]}
    check_procore(tally, plan(), seen, records, [], [])
    assert tally.counts["procore_mismatch"] == 1  # hours 1.50 in Procore, 1.00 published
    assert tally.counts["procore_duplicates"] == 1  # record 8 carries record 7's text
    assert tally.counts["procore_orphans"] == 1  # record 9 belongs to no entry
    tally = Tally()
    check_procore(tally, plan(), seen, {"timecard_entries": [record(7, deleted=True)]}, [], [])
    assert tally.counts["procore_missing"] == 1


def test_procore_users_edits_must_survive_unless_forced() -> None:
    edit = HumanTouch("timecard_entries", 7, 100, DAY, "[mc:7]", {"hours": 9.25}, at=10.0)
    seen = [timecard("published", "1.00", 7)]
    tally = Tally()
    check_procore(tally, plan(), seen, {"timecard_entries": [record(7, "1.00")]}, [edit], [])
    assert tally.counts["edits_overwritten"] == 1
    assert tally.counts["procore_mismatch"] == 0
    force = IssuedCommand(
        "acc",
        "timecard",
        "force_publish",
        {"kind": "date_range", "date_from": DAY, "date_to": DAY},
        at=11.0,
        via="gateway",
    )
    tally = Tally()
    check_procore(tally, plan(), seen, {"timecard_entries": [record(7, "1.00")]}, [edit], [force])
    assert tally.violations == 0
    long_before = dataclasses.replace(force, at=-5.0)
    tally = Tally()
    check_procore(tally, plan(), seen, {"timecard_entries": [record(7, "1.00")]}, [edit], [long_before])
    assert tally.counts["edits_overwritten"] == 1


def test_a_record_deleted_in_procore_must_not_come_back_without_force() -> None:
    delete = HumanTouch("timecard_entries", 7, 100, DAY, "[mc:7]", None, at=10.0)
    seen = [timecard("published", "1.00", 8)]
    records = {"timecard_entries": [record(7, deleted=True), record(8, origin_data="[mc:7]")]}
    tally = Tally()
    check_procore(tally, plan(), seen, records, [delete], [])
    assert tally.counts["edits_overwritten"] == 1


def test_dead_letters_poison_valid_internal_and_loops() -> None:
    sent = {
        ("t", 0, 1): SentMessage("invalid JSON", False, None),
        ("t", 0, 2): SentMessage("", True, "ev-2"),
        ("t", 0, 3): SentMessage("unknown account", True, "ev-3"),
    }
    letters = [
        *[DeadLetter("aggregator.dead-letter", ("t", 0, 1), "not JSON", None)] * 3,
        DeadLetter("aggregator.dead-letter", ("t", 0, 2), "handler failed 5 times", "ev-2"),
        DeadLetter("aggregator.dead-letter", ("t", 0, 3), "unknown account", "ev-3"),
        DeadLetter("aggregator.dead-letter", ("procore.publish-results", 1, 5), "handler failed", "x"),
    ]
    poison = [("invalid JSON", [("t", 0, 1)]), ("missing fields", [("t", 0, 9)])]
    tally = Tally()
    delivered = check_dead_letters(tally, letters, sent, poison, {"ev-2", "ev-3"}, {"unknown account"})
    assert delivered == 1
    assert tally.counts["poison_not_dead_lettered"] == 1
    assert tally.counts["valid_dead_lettered"] == 1
    assert tally.counts["internal_dead_lettered"] == 1
    assert tally.counts["dead_letter_copies"] == 2
