"""What a mapping or setup change marks for the debounced remap (issue 11): pure rules."""

from __future__ import annotations

from services.aggregator import domain
from shared.events import Module, ProcoreEntity


def test_a_mapping_marks_the_dimension_validation_reads_it_for() -> None:
    assert domain.remap_mark(ProcoreEntity.PROJECT, "s1") == ("job_site_id", "s1")
    assert domain.remap_mark(ProcoreEntity.COST_CODE, "cc1") == ("cost_code_id", "cc1")
    assert {e: domain.remap_mark(e, "x")[0] for e in ProcoreEntity} == {
        ProcoreEntity.PROJECT: "job_site_id",
        ProcoreEntity.VENDOR: "company_id",
        ProcoreEntity.EMPLOYEE: "employee_id",
        ProcoreEntity.PAYROLL_TYPE: "pay_id",
        ProcoreEntity.COST_CODE: "cost_code_id",
        ProcoreEntity.CLASSIFICATION: "pay_class_id",
    }


def test_only_modules_rebuild_only_the_company_revalidates() -> None:
    both = frozenset({Module.TIMECARD, Module.MANPOWER})
    assert domain.setup_effect(both, 1, [Module.MANPOWER, Module.TIMECARD], 1) is None
    assert domain.setup_effect(both, 1, [Module.MANPOWER], 1) is domain.SetupEffect.REBUILD
    assert domain.setup_effect(frozenset(), None, [Module.MANPOWER], 1) is domain.SetupEffect.REBUILD
    assert domain.setup_effect(both, 1, both, None) is domain.SetupEffect.REVALIDATE
    assert domain.setup_effect(both, None, both, 7) is domain.SetupEffect.REVALIDATE


def test_chunks_hold_whole_groups_up_to_the_limit() -> None:
    assert domain.chunked([("a", 3), ("b", 3), ("c", 5), ("d", 1)], 6) == [["a", "b"], ["c", "d"]]
    assert domain.chunked([("a", 9), ("b", 1)], 6) == [["a"], ["b"]]  # a bigger group is a chunk of its own
    assert domain.chunked([], 6) == []
