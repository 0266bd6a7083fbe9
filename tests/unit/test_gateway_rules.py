"""Gateway pure logic: cell status and actions, permissions, dashboard and details views (tokens: test_gateway_auth)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.gateway.cells import STATUS_PRECEDENCE, allowed_actions, cell_status, publish_key, row_actions
from services.gateway.dashboard import QuantityGroup, StatusGroup, build_dashboard, page_of_sites
from services.gateway.details import COLUMNS, EntryRecord, build_details, details_row, error_groups
from services.gateway.failures import InvalidInput
from services.gateway.mapping_rules import check_mapping_scope, setup_missing
from services.gateway.names import Name
from services.gateway.permissions import MissingPermission, require
from services.gateway.schemas import EntryStatus as S
from services.gateway.schemas import ManpowerRow, ProductionQuantityRow, TimecardRow
from services.gateway.tokens import Principal
from services.gateway.weeks import week_days, week_of
from shared.events import Module, Permission, ProcoreEntity, PublishAction

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
    assert cell_status(counts) is expected


def test_cell_status_precedence_covers_every_status_once():
    assert sorted(STATUS_PRECEDENCE) == sorted(S)


def test_cell_without_entries_has_no_status():
    with pytest.raises(ValueError, match="without entries"):
        cell_status({})


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
    assert [a.value for a in allowed_actions(dict.fromkeys(statuses, 1))] == actions


def test_rows_offer_republish_for_failed_and_deleted_only():
    assert row_actions(S.FAILED) == [PublishAction.REPUBLISH]
    assert row_actions(S.DELETED) == [PublishAction.REPUBLISH]
    for status in (S.TODO, S.UPDATED, S.PUBLISHED, S.PUBLISHING, S.NON_PUBLISHABLE):
        assert row_actions(status) == []


def test_weeks_start_on_monday():
    assert week_of(date(2024, 6, 9)) == MONDAY
    assert week_of(MONDAY) == MONDAY
    assert week_days(MONDAY)[-1] == date(2024, 6, 9)


# --- permissions and tokens -------------------------------------------------------------


def test_require_names_the_missing_permission():
    who = Principal("u1", "acc", frozenset({Permission.PUBLISH.value}))
    require(who, Permission.PUBLISH)
    with pytest.raises(MissingPermission) as raised:
        require(who, Permission.MAPPING)
    assert "procore.mapping" not in str(raised.value)  # the article's words, not the internal key
    assert "Procore Connect data mapping" in str(raised.value)


def test_cost_code_mappings_need_a_project():
    check_mapping_scope(ProcoreEntity.COST_CODE, 7)
    check_mapping_scope(ProcoreEntity.VENDOR, None)
    with pytest.raises(InvalidInput) as raised:
        check_mapping_scope(ProcoreEntity.COST_CODE, None)
    assert raised.value.field == ("body", "procore_project_id")
    with pytest.raises(InvalidInput):
        check_mapping_scope(ProcoreEntity.EMPLOYEE, 7)


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
    board = build_dashboard(Module.MANPOWER, MONDAY, [], groups, [], NAMES)
    assert [r["job_site"]["name"] for r in board["rows"]] == ["Annex", "Tower A"]
    assert board["total_rows"] == 2
    tower = board["rows"][1]
    assert tower["job_site"]["number"] == "TA-1"
    cell = tower["days"][0]
    assert cell is not None
    assert (cell["manpower"], cell["total_hours"], cell["status"]) == (5, "41.50", S.FAILED)
    assert cell["counts"] == {"published": 1, "failed": 1}
    assert "conflicts" not in cell
    assert "timecards" not in cell
    assert tower["days"][1:] == [None] * 6
    annex = board["rows"][0]["days"][2]
    assert annex is not None
    assert annex["actions"] == [PublishAction.FORCE_PUBLISH]


def test_production_quantity_cells_list_cost_codes_with_quantities():
    groups = [StatusGroup("s1", MONDAY, S.TODO, 2)]
    quantities = [
        QuantityGroup("s1", MONDAY, "zz", "ea", Decimal(3)),
        QuantityGroup("s1", MONDAY, "cc1", "m3", Decimal("12.50")),
    ]
    board = build_dashboard(Module.PRODUCTION_QUANTITY, MONDAY, [], groups, quantities, NAMES)
    cell = board["rows"][0]["days"][0]
    assert cell is not None
    assert cell["quantities"] == [("cc1", "m3", "12.50"), ("zz", "ea", "3")]
    assert board["cost_codes"] == {"cc1": "03-300 Concrete", "zz": "zz"}
    assert "manpower" not in cell
    assert "timecards" not in cell


def test_page_of_sites_sorts_by_name_filters_and_pages():
    page = page_of_sites(["s1", "s2", "s9"], NAMES, q="", offset=2, limit=1)
    assert [s["name"] for s in page.sites] == ["Tower A"]
    assert page.total == 3
    assert [s["job_site_id"] for s in page_of_sites(["s1", "s2", "s9"], NAMES).sites] == ["s2", "s9", "s1"]
    found = page_of_sites(["s1", "s2", "s9"], NAMES, q=" TA-")
    assert [s["job_site_id"] for s in found.sites] == ["s1"]
    assert (found.total, found.q) == (1, "TA-")


def test_a_page_shows_only_its_job_sites():
    groups = [StatusGroup("s1", MONDAY, S.TODO, 1, timecards=1), StatusGroup("s2", MONDAY, S.TODO, 1, timecards=1)]
    page = page_of_sites(["s1", "s2"], NAMES, limit=1)
    board = build_dashboard(Module.TIMECARD, MONDAY, [], groups, [], NAMES, page)
    assert [r["job_site"]["job_site_id"] for r in board["rows"]] == ["s2"]
    assert (board["total_rows"], board["limit"]) == (2, 1)


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
    row = details_row(manpower, NAMES, {})
    assert isinstance(row, ManpowerRow)
    assert (row.company_name, row.crew_tag, row.total_hours, row.manpower, row.average) == (
        "Acme Concrete",
        "Crew 1",
        Decimal("24.00"),
        3,
        Decimal("8.00"),
    )
    assert row.actions == [PublishAction.REPUBLISH]
    assert row.last_error == "Procore said no"

    timecard = entry(
        Module.TIMECARD,
        {"employee_id": "e1", "pay_id": "p1", "cost_code_id": "cc1", "pay_class_id": "pc1"},
        {"hours": "8.00"},
    )
    row = details_row(timecard, NAMES, {"p1": "Regular Time"})
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
    row = details_row(quantity, NAMES, {})
    assert isinstance(row, ProductionQuantityRow)
    assert (row.cost_code, row.um, row.unit) == ("03-300 Concrete", "m3", Decimal(12))
    assert [c.label for c in COLUMNS[Module.PRODUCTION_QUANTITY]] == ["Cost code", "UM", "Unit", "Status"]


def test_deleted_entry_without_content_still_shows():
    gone = entry(Module.MANPOWER, {"company_id": "c1", "crew_tag": None}, None, S.DELETED)
    row = details_row(gone, NAMES, {})
    assert isinstance(row, ManpowerRow)
    assert row.manpower is None
    assert row.total_hours is None
    assert row.actions == [PublishAction.REPUBLISH]


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
    details = build_details(Module.TIMECARD, "s1", MONDAY, [a, b, ok], NAMES, {})
    assert [(g.message, g.entry_ids) for g in details.errors] == [
        (missing_cc, [b.entry_id]),
        (missing_pay, [a.entry_id, b.entry_id]),
    ]
    assert details.status is S.NON_PUBLISHABLE
    assert details.actions == [PublishAction.PUBLISH, PublishAction.FORCE_PUBLISH]
    assert details.job_site.name == "Tower A"


def test_publish_key_keeps_a_job_site_in_order():
    assert publish_key("acc", "s1") == "acc:s1"
    assert publish_key("acc", None) == "acc"


def _record(**kw):
    from datetime import date
    from uuid import uuid4

    from services.gateway.details import EntryRecord
    from shared.events import Module

    base = dict(
        entry_id=uuid4(),
        module=Module.TIMECARD,
        job_site_id="js-1",
        work_date=date(2026, 3, 2),
        dims={"employee_id": "e-1", "pay_id": "REG", "cost_code_id": "cc-7", "pay_class_id": None},
        content={"hours": "8.00"},
        status=S.NON_PUBLISHABLE,
    )
    return EntryRecord(**{**base, **kw})


def test_non_publishable_reasons_link_to_the_mapping_row_that_fixes_them():
    from shared import labels

    cost_code = labels.REASONS["cost_code"].format(label="26-050 Wiring", project="Tower A")
    pay_id = labels.REASONS["payroll_type"].format(label="OT")
    e = _record(errors=(cost_code, pay_id, labels.NOT_CONNECTED))
    row = details_row(e, {}, {}, {"js-1": 562949953421346})
    fixes = [(r.text, r.fix.model_dump() if r.fix else None) for r in row.errors]
    assert fixes == [
        (cost_code, {"entity": "cost_code", "mobiclocks_id": "cc-7", "project_id": "562949953421346"}),
        (pay_id, {"entity": "payroll_type", "mobiclocks_id": "REG", "project_id": None}),
        (labels.NOT_CONNECTED, None),
    ]
    groups = error_groups([e], {"js-1": 562949953421346})
    assert {g.text: g.fix.entity if g.fix else None for g in groups} == {
        cost_code: "cost_code",
        pay_id: "payroll_type",
        labels.NOT_CONNECTED: None,
    }


def test_a_conflict_says_what_to_do_and_never_offers_republish():
    from shared import labels

    e = _record(status=S.FAILED, errors=(), last_error=labels.CHANGED_IN_PROCORE)
    row = details_row(e, {}, {})
    assert row.conflict
    assert row.advice == labels.CONFLICT_ADVICE
    assert row.actions == [PublishAction.FORCE_PUBLISH]
    only_conflicts = allowed_actions({S.FAILED: 2}, conflicts=2)
    assert only_conflicts == [PublishAction.FORCE_PUBLISH]
    mixed = allowed_actions({S.FAILED: 3}, conflicts=2)
    assert PublishAction.REPUBLISH in mixed  # one Failed entry is not a conflict: Republish helps it
    plain = _record(status=S.FAILED, errors=(), last_error="Procore said no")
    assert details_row(plain, {}, {}).actions == [PublishAction.REPUBLISH]


def test_setup_says_what_is_missing_in_setups_order():
    from services.gateway.schemas import Setup
    from shared.events import Module

    empty = Setup(procore_company_id=None, enabled_modules=[], two_way=False)
    assert setup_missing(empty, connected=False) == ["connection", "company", "modules"]
    done = Setup(procore_company_id=5, enabled_modules=[Module.TIMECARD], two_way=False)
    assert setup_missing(done, connected=True) == []
