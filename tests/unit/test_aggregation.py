"""Aggregation rules of DESIGN.md, on plain objects: from scratch, and as deltas."""

from datetime import date
from decimal import Decimal
from typing import Any

from services.aggregator.domain import Timelog, Totals, aggregate, content_of, contributions
from shared.events import Module

DAY = date(2026, 11, 20)


def tl(tid: str, emp: str = "e1", company: str = "c1", crew: str | None = "A", hours: float = 8, **kw) -> Timelog:
    base: dict[str, Any] = dict(
        timelog_id=tid,
        employee_id=emp,
        company_id=company,
        crew_tag=crew,
        job_site_id="s1",
        work_date=DAY,
        seconds=int(hours * 3600),
        cost_code_id="cc1",
        pay_class_id=None,
        pay_id="REG",
        quantities=(),
    )
    base.update(kw)
    return Timelog(**base)


def contents(result: dict) -> list[dict[str, str] | None]:
    return [content_of(ref.module, totals) for ref, totals in result.items()]


def test_manpower_counts_distinct_employees_and_averages_hours():
    result = aggregate([tl("1", "e1", hours=8), tl("2", "e1", hours=2), tl("3", "e2", hours=5)], [Module.MANPOWER])
    assert contents(result) == [{"manpower": "2", "total_hours": "15.00", "average_hours": "7.50"}]


def test_manpower_splits_by_company_and_crew():
    result = aggregate([tl("1", crew="A"), tl("2", crew="B"), tl("3", company="c2", crew="A")], [Module.MANPOWER])
    assert len(result) == 3


def test_timecard_key_includes_pay_id_cost_code_and_pay_class():
    logs = [tl("1"), tl("2", pay_id="OT"), tl("3", cost_code_id="cc2"), tl("4", pay_class_id="pc1"), tl("5")]
    result = aggregate(logs, [Module.TIMECARD])
    assert len(result) == 4
    assert sorted(c["hours"] for c in contents(result) if c) == ["16.00", "8.00", "8.00", "8.00"]


def test_production_quantity_sums_units_per_cost_code_and_unit():
    logs = [
        tl("1", quantities=(("cc1", "m3", Decimal("2.5")), ("cc1", "kg", Decimal(10)))),
        tl("2", quantities=(("cc1", "m3", Decimal("1.5")),)),
    ]
    result = aggregate(logs, [Module.PRODUCTION_QUANTITY])
    by_unit = {ref.dims[1]: content_of(ref.module, t) for ref, t in result.items()}
    assert by_unit == {"m3": {"units": "4"}, "kg": {"units": "10"}}


def test_only_enabled_modules_produce_entries():
    logs = [tl("1", quantities=(("cc1", "m3", Decimal(1)),))]
    assert {ref.module for ref in aggregate(logs, [Module.TIMECARD])} == {Module.TIMECARD}
    assert aggregate(logs, []) == {}


def test_rounding_is_half_up_to_hundredths():
    assert contents(aggregate([tl("1", hours=1 / 3)], [Module.TIMECARD])) == [{"hours": "0.33"}]


def test_deltas_equal_a_recompute_and_removing_everything_empties():
    a, b, c = tl("1", "e1", hours=8), tl("2", "e1", hours=2), tl("3", "e2", hours=5)
    totals: dict = {}
    for t in (a, b, c):
        for ref, seconds, units, member in contributions(t, [Module.MANPOWER]):
            totals.setdefault(ref, Totals()).add(seconds, units, member, +1)
    assert totals == aggregate([a, b, c], [Module.MANPOWER])
    for ref, seconds, units, member in contributions(b, [Module.MANPOWER]):
        totals[ref].add(seconds, units, member, -1)
    assert totals == aggregate([a, c], [Module.MANPOWER])
    for t in (a, c):
        for ref, seconds, units, member in contributions(t, [Module.MANPOWER]):
            totals[ref].add(seconds, units, member, -1)
    (empty,) = totals.values()
    assert empty.empty
    assert content_of(Module.MANPOWER, empty) is None
