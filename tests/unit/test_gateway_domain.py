"""Gateway pure logic: cell status and actions, permissions, dashboard and details views (tokens: test_gateway_auth)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.gateway import domain
from services.gateway.domain import (
    EntryRecord,
    InvalidInput,
    MissingPermission,
    Name,
    Permission,
    Principal,
    QuantityGroup,
    StatusGroup,
)
from services.gateway.views import EntryStatus as S
from services.gateway.views import ManpowerRow, ProductionQuantityRow, TimecardRow
from shared.events import Module, ProcoreEntity, PublishAction

MONDAY = date(2024, 6, 3)


# --- cell status and actions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({S.PUBLISHED: 3, S.FAILED: 1}, S.FAILED),
        ({S.NON_PUBLISHABLE: 1, S.DELETED: 2, S.TODO: 1}, S.NON_PUBLISHABLE),
        ({S.DELETED: 1, S.UPDATED: 1}, S.DELETED),
        ({S.UPDATED: 1, S.TODO: 4, S.PUBLISHED: 1}, S.UPDATED),
        ({S.TODO: 1, S.PUBLISHING: 1}, S.TODO),
        ({S.PUBLISHING: 1, S.PUBLISHED: 9}, S.PUBLISHING),
        ({S.PUBLISHED: 2}, S.PUBLISHED),
        ({S.PUBLISHED: 2, S.FAILED: 0}, S.PUBLISHED),
    ],
)
def test_cell_status_takes_the_status_that_most_needs_attention(counts, expected):
    assert domain.cell_status(counts) is expected


def test_cell_status_precedence_covers_every_status_once():
    assert sorted(domain.STATUS_PRECEDENCE) == sorted(S)


def test_cell_without_entries_has_no_status():
    with pytest.raises(ValueError):
        domain.cell_status({})


@pytest.mark.parametrize(
    ("statuses", "actions"),
    [
        ([S.TODO], ["publish", "force_publish"]),
        ([S.UPDATED], ["publish", "force_publish"]),
        ([S.FAILED], ["publish", "republish", "force_publish"]),
        ([S.DELETED, S.PUBLISHED], ["publish", "republish", "force_publish"]),
        ([S.PUBLISHED], ["force_publish"]),
        ([S.PUBLISHING], []),
        ([S.NON_PUBLISHABLE], []),
        ([S.NON_PUBLISHABLE, S.TODO], ["publish", "force_publish"]),
    ],
)
def test_allowed_actions_follow_the_entries(statuses, actions):
    assert [a.value for a in domain.allowed_actions(statuses)] == actions


def test_rows_offer_republish_for_failed_and_deleted_only():
    assert domain.row_actions(S.FAILED) == [PublishAction.REPUBLISH]
    assert domain.row_actions(S.DELETED) == [PublishAction.REPUBLISH]
    for status in (S.TODO, S.UPDATED, S.PUBLISHED, S.PUBLISHING, S.NON_PUBLISHABLE):
        assert domain.row_actions(status) == []


def test_weeks_start_on_monday():
    assert domain.week_of(date(2024, 6, 9)) == MONDAY
    assert domain.week_of(MONDAY) == MONDAY
    assert domain.week_days(MONDAY)[-1] == date(2024, 6, 9)


# --- permissions and tokens -------------------------------------------------------------


def test_require_names_the_missing_permission():
    who = Principal("u1", "acc", frozenset({Permission.PUBLISH.value}))
    domain.require(who, Permission.PUBLISH)
    with pytest.raises(MissingPermission) as raised:
        domain.require(who, Permission.MAPPING)
    assert "procore.mapping" in str(raised.value)
    assert "Procore Connect data mapping" in str(raised.value)


def test_cost_code_mappings_need_a_project():
    domain.check_mapping_scope(ProcoreEntity.COST_CODE, 7)
    domain.check_mapping_scope(ProcoreEntity.VENDOR, None)
    with pytest.raises(InvalidInput) as raised:
        domain.check_mapping_scope(ProcoreEntity.COST_CODE, None)
    assert raised.value.field == ("body", "procore_project_id")
    with pytest.raises(InvalidInput):
        domain.check_mapping_scope(ProcoreEntity.EMPLOYEE, 7)


# --- dashboard and details --------------------------------------------------------------

NAMES = {
    ("job_site", "s1"): Name("Tower A", "TA-1"),
    ("job_site", "s2"): Name("Annex"),
    ("cost_code", "cc1"): Name("Concrete", "03-300"),
    ("company", "c1"): Name("Acme Concrete"),
    ("employee", "e1"): Name("Jane Doe"),
    ("pay_id", "p1"): Name("REG"),
    ("pay_class", "pc1"): Name("Journeyman"),
}


def test_dashboard_sums_each_cell_and_sorts_job_sites_by_name():
    groups = [
        StatusGroup("s1", MONDAY, S.PUBLISHED, 1, manpower=3, total_hours=Decimal("24.00"), timecards=1),
        StatusGroup("s1", MONDAY, S.FAILED, 1, manpower=2, total_hours=Decimal("17.50"), timecards=1),
        StatusGroup("s2", MONDAY + timedelta(days=2), S.PUBLISHED, 1, manpower=1, total_hours=Decimal(8)),
        StatusGroup("s1", MONDAY + timedelta(days=7), S.TODO, 1, manpower=9),  # next week: ignored
    ]
    board = domain.build_dashboard(Module.MANPOWER, MONDAY, [], groups, [], NAMES)
    assert [r.job_site.name for r in board.rows] == ["Annex", "Tower A"]
    tower = board.rows[1]
    assert tower.job_site.number == "TA-1"
    cell = tower.days[0]
    assert cell is not None
    assert (cell.manpower, cell.total_hours, cell.status, cell.entries) == (5, Decimal("41.50"), S.FAILED, 2)
    assert cell.counts == {S.PUBLISHED: 1, S.FAILED: 1}
    assert tower.days[1:] == [None] * 6
    annex = board.rows[0].days[2]
    assert annex is not None and annex.actions == [PublishAction.FORCE_PUBLISH]


def test_production_quantity_cells_list_cost_codes_with_quantities():
    groups = [StatusGroup("s1", MONDAY, S.TODO, 2)]
    quantities = [
        QuantityGroup("s1", MONDAY, "cc1", "m3", Decimal(12)),
        QuantityGroup("s1", MONDAY, "zz", "ea", Decimal(3)),
    ]
    board = domain.build_dashboard(Module.PRODUCTION_QUANTITY, MONDAY, [], groups, quantities, NAMES)
    cell = board.rows[0].days[0]
    assert cell is not None and cell.quantities is not None
    assert [(q.cost_code, q.unit, q.quantity) for q in cell.quantities] == [
        ("03-300 Concrete", "m3", Decimal(12)),
        ("zz", "ea", Decimal(3)),
    ]
    assert cell.manpower is None and cell.timecards is None


def entry(module: Module, dims, content, status=S.TODO, errors=(), last_error=None) -> EntryRecord:
    return EntryRecord(
        entry_id=uuid.uuid4(),
        module=module,
        job_site_id="s1",
        work_date=MONDAY,
        dims=dims,
        content=content,
        status=status,
        errors=tuple(errors),
        last_error=last_error,
    )


def test_details_rows_carry_the_help_article_fields():
    manpower = entry(
        Module.MANPOWER,
        {"company_id": "c1", "crew_tag": "Crew 1"},
        {"manpower": "3", "total_hours": "24.00", "average_hours": "8.00"},
        S.FAILED,
        last_error="Procore said no",
    )
    row = domain.details_row(manpower, NAMES, {})
    assert isinstance(row, ManpowerRow)
    assert (row.company_name, row.crew_tag, row.total_hours, row.manpower, row.average) == (
        "Acme Concrete",
        "Crew 1",
        Decimal("24.00"),
        3,
        Decimal("8.00"),
    )
    assert row.actions == [PublishAction.REPUBLISH] and row.last_error == "Procore said no"

    timecard = entry(
        Module.TIMECARD,
        {"employee_id": "e1", "pay_id": "p1", "cost_code_id": "cc1", "pay_class_id": "pc1"},
        {"hours": "8.00"},
    )
    row = domain.details_row(timecard, NAMES, {"p1": "Regular Time"})
    assert isinstance(row, TimecardRow)
    assert (row.employee, row.pay_class, row.cost_code, row.pay_id, row.payroll_item, row.timelog_duration) == (
        "Jane Doe",
        "Journeyman",
        "03-300 Concrete",
        "REG",
        "Regular Time",
        Decimal("8.00"),
    )

    quantity = entry(Module.PRODUCTION_QUANTITY, {"cost_code_id": "cc1", "unit_of_measure": "m3"}, {"units": "12"})
    row = domain.details_row(quantity, NAMES, {})
    assert isinstance(row, ProductionQuantityRow)
    assert (row.cost_code, row.um, row.unit) == ("03-300 Concrete", "m3", Decimal(12))
    assert [c.label for c in domain.COLUMNS[Module.PRODUCTION_QUANTITY]] == ["Cost code", "UM", "Unit", "Status"]


def test_deleted_entry_without_content_still_shows():
    gone = entry(Module.MANPOWER, {"company_id": "c1", "crew_tag": None}, None, S.DELETED)
    row = domain.details_row(gone, NAMES, {})
    assert isinstance(row, ManpowerRow)
    assert row.manpower is None and row.total_hours is None and row.actions == [PublishAction.REPUBLISH]


def test_errors_panel_groups_non_publishable_reasons():
    missing_pay = "Pay ID OT has no payroll item"
    missing_cc = "Cost code 03-300 Concrete is not mapped for project Tower A"
    a = entry(Module.TIMECARD, {"employee_id": "e1", "pay_id": "p2"}, {"hours": "1"}, S.NON_PUBLISHABLE, [missing_pay])
    b = entry(
        Module.TIMECARD,
        {"employee_id": "e2", "pay_id": "p2"},
        {"hours": "1"},
        S.NON_PUBLISHABLE,
        [missing_pay, missing_cc],
    )
    ok = entry(Module.TIMECARD, {"employee_id": "e3", "pay_id": "p1"}, {"hours": "1"}, S.TODO)
    details = domain.build_details(Module.TIMECARD, "s1", MONDAY, [a, b, ok], NAMES, {})
    assert [(g.message, g.entry_ids) for g in details.errors] == [
        (missing_cc, [b.entry_id]),
        (missing_pay, [a.entry_id, b.entry_id]),
    ]
    assert details.status is S.NON_PUBLISHABLE
    assert details.actions == [PublishAction.PUBLISH, PublishAction.FORCE_PUBLISH]
    assert details.job_site.name == "Tower A"


def test_publish_key_keeps_a_job_site_in_order():
    assert domain.publish_key("acc", "s1") == "acc:s1"
    assert domain.publish_key("acc", None) == "acc"
