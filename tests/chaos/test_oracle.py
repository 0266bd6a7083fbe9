"""The oracle and the generator, on hand-made examples (pure, fast)."""

from __future__ import annotations

import json
import random
from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.events import TOPIC_CONTRACTS, adapter
from tests.chaos import messages as m
from tests.chaos import readback
from tests.chaos.accounts import reference_events, setup_commands
from tests.chaos.generator import Generator
from tests.chaos.oracle import Oracle, hours
from tests.chaos.plan import AccountPlan, Shape
from tests.chaos.poison import UNKNOWN_ACCOUNT, poison_messages

DAY = date(2026, 3, 2)


def plan(account: str = "acc") -> AccountPlan:
    return AccountPlan(account, Shape(sites=3, employees=4, cost_codes=3, days=2), (DAY, date(2026, 3, 3)))


def upsert(timelog: str, revision: int, **fields: object) -> m.Json:
    body: m.Json = {
        **m.envelope("acc", "timelog.upserted"),
        "timelog_id": timelog,
        "revision": revision,
        "employee_id": "emp-0",
        "company_id": "co-0",
        "crew_tag": "co-0-crew-0",
        "job_site_id": "site-0",
        "work_date": DAY.isoformat(),
        "clock_in": None,
        "clock_out": None,
        "duration_seconds": 3600,
        "cost_code_id": "cc-0",
        "pay_class_id": None,
        "pay_id": "REG",
        "quantities": [],
    }
    return {**body, **fields}


def test_hours_round_half_up_to_hundredths() -> None:
    assert hours(18) == Decimal("0.01")  # 0.005 h
    assert hours(17) == Decimal("0.00")
    assert hours(8 * 3600 + 1800) == Decimal("8.50")


def test_highest_revision_wins_whatever_the_order() -> None:
    oracle = Oracle([plan()])
    oracle.observe(upsert("t1", 3, duration_seconds=7200))
    oracle.observe(upsert("t1", 1, duration_seconds=600))  # stale, arrives late
    oracle.observe(upsert("t1", 3, duration_seconds=999))  # same revision again: ignored
    (entry,) = [e for e in oracle.entries("acc").values() if e.module == "timecard"]
    assert entry.total_hours == Decimal("2.00")


def test_a_tombstone_beats_late_older_revisions() -> None:
    oracle = Oracle([plan()])
    oracle.observe(upsert("t1", 1))
    oracle.observe(m.timelog_deleted("acc", "t1", 2))
    oracle.observe(upsert("t1", 1))
    assert oracle.entries("acc") == {}


def test_a_move_leaves_the_old_entry_and_fills_the_new_one() -> None:
    oracle = Oracle([plan()])
    oracle.observe(upsert("t1", 1))
    oracle.observe(upsert("t2", 1, employee_id="emp-1"))
    oracle.observe(upsert("t1", 2, job_site_id="site-1"))
    manpower = {k[1]: e for k, e in oracle.entries("acc").items() if k[0] == "manpower"}
    assert manpower["site-0"].manpower == 1
    assert manpower["site-0"].members == {"emp-1"}
    assert manpower["site-1"].manpower == 1
    assert manpower["site-1"].total_hours == Decimal("1.00")


def test_manpower_counts_distinct_employees_and_averages_either_reading() -> None:
    oracle = Oracle([plan()])
    oracle.observe(upsert("t1", 1, duration_seconds=3601))
    oracle.observe(upsert("t2", 1, duration_seconds=3601))  # same employee twice
    oracle.observe(upsert("t3", 1, employee_id="emp-2", duration_seconds=7202))
    (entry,) = [e for e in oracle.entries("acc").values() if e.module == "manpower"]
    assert entry.manpower == 2
    assert entry.total_hours == Decimal("4.00")
    assert entry.averages() == {Decimal("2.00")}
    assert entry.value_problems({"manpower": 2, "total_hours": "4.00", "average": "2.00"}) == []
    assert entry.value_problems({"manpower": 3, "total_hours": "4.00", "average": "1.33"}) == [
        "manpower 3 ≠ 2",
        "average 1.33 ≠ 2.00",
    ]


def test_quantities_sum_per_cost_code_and_unit_and_fractions_are_not_publishable() -> None:
    oracle = Oracle([plan()])
    q = [
        {"cost_code_id": "cc-1", "unit_of_measure": "m3", "units": 2},
        {"cost_code_id": "cc-1", "unit_of_measure": "m3", "units": "0.5"},
    ]
    oracle.observe(upsert("t1", 1, quantities=q))
    oracle.observe(upsert("t2", 1, quantities=[{"cost_code_id": "cc-1", "unit_of_measure": "ea", "units": 4}]))
    pq = {k[3]: e for k, e in oracle.entries("acc").items() if k[0] == "production_quantity"}
    assert pq[("cc-1", "m3")].units == Decimal("2.5")
    assert pq[("cc-1", "m3")].blockers == ["fractional quantity"]
    assert pq[("cc-1", "ea")].units == 4
    assert pq[("cc-1", "ea")].publishable


def test_missing_mappings_make_entries_non_publishable() -> None:
    oracle = Oracle([plan()])
    oracle.observe(upsert("t1", 1, job_site_id="site-2"))  # the unmapped job site
    oracle.observe(upsert("t2", 1, employee_id="emp-3", company_id="co-1", cost_code_id="cc-2"))
    by_key = oracle.entries("acc")
    assert all(not e.publishable for k, e in by_key.items() if k[1] == "site-2")
    (timecard,) = [e for k, e in by_key.items() if k[0] == "timecard" and k[3][0] == "emp-3"]
    assert timecard.blockers == ["employee emp-3 not mapped", "cost code cc-2 not mapped"]
    (manpower,) = [e for k, e in by_key.items() if k[0] == "manpower" and k[1] == "site-0"]
    assert manpower.publishable


def test_non_publishable_cells_count_each_blocked_entry_and_tolerate_fractions_shown_failed() -> None:
    oracle = Oracle([plan()])
    oracle.observe(upsert("t1", 1, job_site_id="site-2"))  # the unmapped job site: every module blocked
    q = [{"cost_code_id": "cc-1", "unit_of_measure": "m3", "units": "0.5"}]
    oracle.observe(upsert("t2", 1, quantities=q))  # mapped, but a fraction Procore cannot take
    expected = oracle.non_publishable("acc")
    day = DAY.isoformat()
    assert expected[("manpower", "site-2", day)] == (1, 0)
    assert expected[("production_quantity", "site-0", day)] == (1, 1)
    assert ("manpower", "site-0", day) not in expected
    seen = {("manpower", "site-2", day): 1, ("timecard", "site-2", day): 1, ("production_quantity", "site-0", day): 0}
    assert readback.non_publishable_differences(seen, expected) == 0  # the fraction may show Failed
    assert readback.non_publishable_differences({**seen, ("manpower", "site-2", day): 0}, expected) == 1
    assert readback.non_publishable_differences({**seen, ("manpower", "site-0", day): 1}, expected) == 1


def test_only_enabled_modules_have_entries() -> None:
    p = plan()
    p.modules = ("manpower",)
    oracle = Oracle([p])
    oracle.observe(upsert("t1", 1, quantities=[{"cost_code_id": "cc-0", "unit_of_measure": "m3", "units": 1}]))
    assert {k[0] for k in oracle.entries("acc")} == {"manpower"}


def test_generated_messages_keep_the_contracts_and_feed_the_oracle() -> None:
    plans = [plan("a"), plan("b")]
    generator, oracle = Generator(plans, seed=7), Oracle(plans)
    timelogs = adapter(TOPIC_CONTRACTS["timelogs"])
    outs = generator.take(3000)
    for out in outs:
        assert isinstance(out.value, dict)
        timelogs.validate_json(json.dumps(out.value))
        oracle.observe(out.value)
    kinds = {o.value["type"] for o in outs if isinstance(o.value, dict)}
    assert kinds == {"timelog.upserted", "timelog.deleted"}
    event_ids = [o.value["event_id"] for o in outs if isinstance(o.value, dict)]
    assert len(event_ids) > len(set(event_ids))  # exact re-deliveries happen
    assert all(oracle.entries(p.account_id) for p in plans)


def test_setup_messages_keep_the_contracts() -> None:
    p = plan()
    p.adopt_seed_answer(
        {
            "company_id": 10,
            "vendors": [11, 12],
            "people": [13, 14, 15, 16],
            "projects": [{"id": 20 + i, "cost_codes": [{"id": 30 + 10 * i + j} for j in range(3)]} for i in range(2)],
            "timecard_time_types": [
                {"id": 41, "abbreviated_time_type": "REG"},
                {"id": 42, "abbreviated_time_type": "OT"},
            ],
        }
    )
    for event in reference_events(p):
        adapter(TOPIC_CONTRACTS["reference"]).validate_json(json.dumps(event))
    commands = setup_commands(p)
    for command in commands:
        adapter(TOPIC_CONTRACTS["mapping_commands"]).validate_json(json.dumps(command))
    cost_codes = [c for c in commands if c.get("entity") == "cost_code" and c["type"] == "mapping.set"]
    assert {(c["mobiclocks_id"], c["procore_project_id"]) for c in cost_codes} == {
        ("cc-0", 20),
        ("cc-1", 20),
        ("cc-0", 21),
        ("cc-1", 21),
    }


@pytest.mark.parametrize("index", range(17))
def test_poison_is_rejected_by_the_contracts_and_the_unknown_account_is_not(index: int) -> None:
    out = poison_messages(plan(), "ghost", random.Random(1))[index]
    contract = {
        m.TIMELOGS: "timelogs",
        m.PUBLISH_COMMANDS: "publish_commands",
        m.MAPPING_COMMANDS: "mapping_commands",
        m.REFERENCE: "reference",
        m.PUBLISH_REQUESTS: "publish_requests",
        m.PUBLISH_RESULTS: "publish_results",
    }[out.topic]
    body = out.value if isinstance(out.value, bytes) else json.dumps(out.value)
    if out.label == UNKNOWN_ACCOUNT:
        adapter(TOPIC_CONTRACTS[contract]).validate_json(body)
        assert out.valid
    else:
        with pytest.raises(ValidationError):
            adapter(TOPIC_CONTRACTS[contract]).validate_json(body)
        assert not out.valid
