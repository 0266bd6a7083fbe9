"""Pure mapping rules: tabs per module, number normalization, auto-map, one-to-one tabs, permissions."""

from __future__ import annotations

import pytest

from services.gateway import mapping_rules as gateway_rules
from services.mapping import domain
from services.mapping.domain import (
    CurrentMapping,
    MobiClocksRow,
    Outcome,
    Permission,
    ProcoreRow,
    Source,
    auto_map,
    normalize_number,
    tabs_for,
)
from shared.events import Module, ProcoreEntity

P = ProcoreEntity


# --- tabs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modules", "tabs"),
    [
        ([], []),
        ([Module.MANPOWER], [P.VENDOR, P.PROJECT]),
        ([Module.TIMECARD], [P.PROJECT, P.EMPLOYEE, P.CLASSIFICATION, P.COST_CODE, P.PAYROLL_TYPE]),
        ([Module.PRODUCTION_QUANTITY], [P.PROJECT, P.COST_CODE]),
        ([Module.MANPOWER, Module.PRODUCTION_QUANTITY], [P.VENDOR, P.PROJECT, P.COST_CODE]),
        (list(Module), list(ProcoreEntity)),
    ],
)
def test_tabs_follow_the_enabled_modules(modules: list[Module], tabs: list[ProcoreEntity]) -> None:
    assert tabs_for(modules) == tabs
    assert tabs_for(reversed(modules)) == tabs  # help-article order, whatever the order of modules


def test_the_gateway_describes_tabs_with_the_mapping_rules() -> None:
    assert gateway_rules.tab(ProcoreEntity.COST_CODE).mobiclocks_label == "Cost code"
    assert gateway_rules.tab(ProcoreEntity.PAYROLL_TYPE).mobiclocks_label == "Pay ID"
    assert gateway_rules.tab(ProcoreEntity.VENDOR).auto_map is False
    assert gateway_rules.PROJECT_SCOPED == domain.PROJECT_SCOPED


def test_cost_codes_and_classifications_need_a_mapped_project_only_cost_codes_are_per_project() -> None:
    assert set(domain.NEEDS_MAPPED_PROJECT) == {P.COST_CODE, P.CLASSIFICATION}
    assert set(domain.PROJECT_SCOPED) == {P.COST_CODE}


# --- normalization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("03-300", "  03-300 ", True),
        ("p-100", "P-100", True),
        ("P  100", "p 100", True),
        ("P\t100", "P 100", True),
        ("03-300", "03 300", False),
        ("03-300", "3-300", False),
        ("REG", "REGULAR", False),
    ],
)
def test_numbers_compare_trimmed_casefolded_with_inner_spaces_collapsed(a: str, b: str, equal: bool) -> None:
    assert (normalize_number(a) == normalize_number(b)) is equal


def test_blank_numbers_are_no_numbers() -> None:
    assert normalize_number(None) is None
    assert normalize_number("   ") is None


# --- auto-map -------------------------------------------------------------------------------


def mc(entity_id: str, number: str | None) -> MobiClocksRow:
    return MobiClocksRow(entity_id, f"name of {entity_id}", number)


def pc(procore_id: int, number: str | None) -> ProcoreRow:
    return ProcoreRow(procore_id, f"Procore {procore_id}", number)


def outcomes(plan: domain.AutoMapPlan) -> dict[str, tuple[Outcome, int | None]]:
    return {d.mobiclocks_id: (d.outcome, d.procore_id) for d in plan.decisions}


def test_equal_numbers_are_mapped() -> None:
    plan = auto_map(P.PROJECT, [mc("s1", "P-100"), mc("s2", "P-200")], [pc(10, "P-100"), pc(20, "P-200")], {})
    assert plan.assignments == [("s1", 10), ("s2", 20)]
    assert (plan.count(Outcome.MAPPED), plan.count(Outcome.SKIPPED), plan.count(Outcome.AMBIGUOUS)) == (2, 0, 0)


def test_whitespace_and_case_do_not_matter() -> None:
    plan = auto_map(P.COST_CODE, [mc("cc", "  03-300 "), mc("pay", "reg")], [pc(1, "03-300"), pc(2, "REG")], {})
    assert plan.assignments == [("cc", 1), ("pay", 2)]


def test_rows_without_number_or_match_are_skipped() -> None:
    plan = auto_map(P.EMPLOYEE, [mc("e1", None), mc("e2", "E-9"), mc("e3", "E-1")], [pc(1, "E-1"), pc(2, None)], {})
    assert outcomes(plan) == {
        "e1": (Outcome.SKIPPED, None),
        "e2": (Outcome.SKIPPED, None),
        "e3": (Outcome.MAPPED, 1),
    }


def test_two_procore_entities_with_one_number_are_ambiguous_not_guessed() -> None:
    plan = auto_map(P.PROJECT, [mc("s1", "P-100")], [pc(10, "P-100"), pc(11, " p-100")], {})
    assert plan.assignments == []
    (decision,) = plan.decisions
    assert decision.outcome is Outcome.AMBIGUOUS
    assert "10" in decision.reason
    assert "11" in decision.reason


def test_duplicate_mobiclocks_numbers_in_a_many_to_one_tab_all_map() -> None:
    plan = auto_map(P.PAYROLL_TYPE, [mc("ot1", "OT"), mc("ot2", "ot")], [pc(5, "OT")], {})
    assert plan.assignments == [("ot1", 5), ("ot2", 5)]


def test_duplicate_mobiclocks_numbers_in_a_one_to_one_tab_are_ambiguous() -> None:
    plan = auto_map(P.EMPLOYEE, [mc("e1", "E-1"), mc("e2", "e-1")], [pc(7, "E-1")], {})
    assert plan.assignments == []
    assert plan.count(Outcome.AMBIGUOUS) == 2


def test_manual_mappings_are_kept_unless_asked() -> None:
    current = {"s1": CurrentMapping(99, Source.MANUAL)}
    kept = auto_map(P.PROJECT, [mc("s1", "P-100")], [pc(10, "P-100")], current)
    assert kept.assignments == []
    assert kept.decisions[0].reason == "mapped by hand; kept"
    replaced = auto_map(P.PROJECT, [mc("s1", "P-100")], [pc(10, "P-100")], current, overwrite_manual=True)
    assert replaced.assignments == [("s1", 10)]


def test_earlier_auto_mappings_are_updated_and_equal_ones_skipped() -> None:
    current = {"s1": CurrentMapping(99, Source.AUTO), "s2": CurrentMapping(20, Source.MANUAL)}
    plan = auto_map(P.PROJECT, [mc("s1", "P-100"), mc("s2", "P-200")], [pc(10, "P-100"), pc(20, "P-200")], current)
    assert outcomes(plan) == {"s1": (Outcome.MAPPED, 10), "s2": (Outcome.SKIPPED, 20)}


def test_one_to_one_tabs_never_give_a_taken_procore_entity_to_a_second_row() -> None:
    current = {"e-old": CurrentMapping(7, Source.MANUAL)}
    plan = auto_map(P.EMPLOYEE, [mc("e-new", "E-1"), mc("e-old", None)], [pc(7, "E-1")], current)
    decision = next(d for d in plan.decisions if d.mobiclocks_id == "e-new")
    assert decision.outcome is Outcome.SKIPPED
    assert "already mapped from e-old" in decision.reason
    assert plan.assignments == []


def test_tabs_without_number_field_never_auto_map() -> None:
    for entity in (P.VENDOR, P.CLASSIFICATION):
        plan = auto_map(entity, [mc("a", "V-1")], [pc(1, "V-1")], {})
        assert plan.assignments == []
        assert plan.count(Outcome.SKIPPED) == 1


# --- many-to-one and permissions -----------------------------------------------------------------


def test_many_to_one_only_where_it_makes_sense() -> None:
    assert domain.one_to_one_conflict(P.EMPLOYEE, "e2", ["e1"]) == "e1"
    assert domain.one_to_one_conflict(P.VENDOR, "c2", ["c1", "c2"]) == "c1"
    assert domain.one_to_one_conflict(P.EMPLOYEE, "e1", ["e1"]) is None  # re-mapping the same row
    for entity in (P.PROJECT, P.COST_CODE, P.CLASSIFICATION, P.PAYROLL_TYPE):
        assert domain.one_to_one_conflict(entity, "x2", ["x1"]) is None


def test_permission_refusals_name_the_permission() -> None:
    refusal = domain.refusal_for_permission(Permission.MAPPING, ["procore.publish"])
    assert refusal is not None
    assert "Procore Connect data mapping" in refusal
    assert domain.refusal_for_permission(Permission.SETUP, ["procore.mapping"]) is not None
    assert domain.refusal_for_permission(Permission.SETUP, ["procore.setup"]) is None
    # fail closed: no permissions list is no implicit "trusted backend"
    assert "fail closed" in (domain.refusal_for_permission(Permission.MAPPING, None) or "")


def test_payroll_types_match_the_abbreviation_else_the_time_type_procore_listed() -> None:
    """Procore's company list of time types has only `id` and `time_type`; the abbreviation comes per project."""
    procore = [
        ProcoreRow(1, "Regular Time", "REG"),  # read from a mapped project's list: its abbreviation
        ProcoreRow(2, "Overtime", None),  # the company's list only: its name
        ProcoreRow(3, "Double Time", None),
    ]
    pay_ids = [
        MobiClocksRow("pay-reg", "Regular", "REG"),
        MobiClocksRow("pay-ot", "Overtime", "OT"),
        MobiClocksRow("pay-dt", "Double", "double time"),
        MobiClocksRow("pay-x", "Bonus", None),
    ]
    assert outcomes(auto_map(P.PAYROLL_TYPE, pay_ids, procore, {})) == {
        "pay-reg": (Outcome.MAPPED, 1),
        "pay-ot": (Outcome.MAPPED, 2),
        "pay-dt": (Outcome.MAPPED, 3),
        "pay-x": (Outcome.SKIPPED, None),
    }
    # Other tabs never fall back to names: a Number is the only thing auto-map compares there.
    plan = auto_map(P.EMPLOYEE, [MobiClocksRow("e1", "Ann Lee", None)], [ProcoreRow(9, "Ann Lee", None)], {})
    assert outcomes(plan) == {"e1": (Outcome.SKIPPED, None)}
