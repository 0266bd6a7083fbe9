"""Aggregation rules of DESIGN.md, on plain objects."""

from datetime import date
from decimal import Decimal

from services.aggregator.domain import Timelog, aggregate
from shared.events import Module

DAY = date(2026, 11, 20)


def tl(tid: str, emp: str = "e1", company: str = "c1", crew: str | None = "A", hours: float = 8, **kw) -> Timelog:
    base = dict(
        timelog_id=tid, employee_id=emp, company_id=company, crew_tag=crew, job_site_id="s1", work_date=DAY,
        seconds=int(hours * 3600), cost_code_id="cc1", pay_class_id=None, pay_id="REG", quantities=(),
    )  # fmt: skip
    base.update(kw)
    return Timelog(**base)  # type: ignore[arg-type]


def contents(result, module):
    return {dict(a.dims).get("crew_tag") if module is Module.MANPOWER else a.entry_key: dict(a.content)
            for (m, _), a in result.items() if m is module}  # fmt: skip


def test_manpower_counts_distinct_employees_and_averages_hours():
    result = aggregate([tl("1", "e1", hours=8), tl("2", "e1", hours=2), tl("3", "e2", hours=5)], [Module.MANPOWER])
    (entry,) = result.values()
    assert dict(entry.content) == {"manpower": "2", "total_hours": "15.00", "average_hours": "7.50"}
    assert entry.timelog_ids == {"1", "2", "3"}


def test_manpower_splits_by_company_and_crew():
    result = aggregate([tl("1", crew="A"), tl("2", crew="B"), tl("3", company="c2", crew="A")], [Module.MANPOWER])
    assert len(result) == 3


def test_timecard_key_includes_pay_id_cost_code_and_pay_class():
    logs = [tl("1"), tl("2", pay_id="OT"), tl("3", cost_code_id="cc2"), tl("4", pay_class_id="pc1"), tl("5")]
    result = aggregate(logs, [Module.TIMECARD])
    assert len(result) == 4
    hours = sorted(dict(a.content)["hours"] for a in result.values())
    assert hours == ["16.00", "8.00", "8.00", "8.00"]


def test_production_quantity_sums_units_per_cost_code_and_unit():
    logs = [
        tl("1", quantities=(("cc1", "m3", Decimal("2.5")), ("cc1", "kg", Decimal(10)))),
        tl("2", quantities=(("cc1", "m3", Decimal("1.5")),)),
    ]
    result = aggregate(logs, [Module.PRODUCTION_QUANTITY])
    by_unit = {dict(a.dims)["unit_of_measure"]: dict(a.content)["units"] for a in result.values()}
    assert by_unit == {"m3": "4", "kg": "10"}


def test_only_enabled_modules_produce_entries():
    logs = [tl("1", quantities=(("cc1", "m3", Decimal(1)),))]
    assert {m for m, _ in aggregate(logs, [Module.TIMECARD])} == {Module.TIMECARD}
    assert aggregate(logs, []) == {}


def test_rounding_is_half_up_to_hundredths():
    (entry,) = aggregate([tl("1", hours=1 / 3)], [Module.TIMECARD]).values()
    assert dict(entry.content)["hours"] == "0.33"
