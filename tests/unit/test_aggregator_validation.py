"""`domain.Validation` (the hot path's validation, each part worked out once per batch) says for every entry of a
batch what it says of that entry alone (`domain.validate`: a fresh one), whatever the order and however often parts
repeat — what it remembers is keyed by everything a part depends on. The wording itself: `test_validation.py`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.aggregator import domain
from services.aggregator.adapters.replica import AccountMappings
from shared.events import Module, ProcoreEntity, ReferenceKind

IDS = ["a", "b", "c"]
PROJECTS = [0, 101, 102]


@st.composite
def views(draw: st.DrawFn) -> AccountMappings:
    m = AccountMappings(procore_company_id=draw(st.sampled_from([None, 7])))
    for entity in ProcoreEntity:
        for mc_id in IDS:
            for project in PROJECTS:
                if draw(st.integers(0, 3)) == 0:
                    continue
                if draw(st.booleans()):
                    name = draw(st.sampled_from([None, "Tower", "Annex"]))
                    m.ids[(entity.value, mc_id, project)] = (draw(st.sampled_from(PROJECTS[1:])), name)
                else:
                    m.broken[(entity.value, mc_id, project)] = "gone"
    for kind in ReferenceKind:
        for mc_id in IDS:
            if draw(st.booleans()):
                m.names[(kind.value, mc_id)] = (f"{kind.value} {mc_id}", draw(st.sampled_from([None, "07"])))
    return m


@st.composite
def entries(draw: st.DrawFn) -> tuple[Module, str, tuple[str | None, ...], dict[str, str]]:
    module = draw(st.sampled_from(list(Module)))
    dims = tuple(draw(st.sampled_from([None, *IDS])) for _ in domain.MODULE_DIMS[module])
    if module is Module.PRODUCTION_QUANTITY:
        content = {"units": draw(st.sampled_from(["0", "3", "2.5", "0.25"]))}
    elif module is Module.TIMECARD:
        content = {"hours": "1.00"}
    else:
        content = {"average_hours": "8.00", "manpower": "1", "total_hours": "8.00"}
    return module, draw(st.sampled_from(IDS)), dims, content


@given(view=views(), batch=st.lists(entries(), min_size=1, max_size=30))
def test_a_batch_gets_what_each_entry_gets_alone(
    view: AccountMappings, batch: list[tuple[Module, str, tuple[str | None, ...], dict[str, str]]]
) -> None:
    memo = domain.Validation(view)
    for module, site, dims, content in batch + batch:  # every part asked for again once it is remembered
        by_name = dict(zip(domain.MODULE_DIMS[module], dims, strict=True))
        expected = domain.validate(module, site, by_name, content, view)
        assert memo.errors(module, site, dims, content) == expected


def test_a_missing_cost_code_names_the_project_of_each_job_site() -> None:
    """The same cost code missing on two job sites mapped to one Procore project: two texts, each naming the project
    as its job site knows it (the mapping's Procore name, or the job site's when the mapping has none)."""
    view = AccountMappings(procore_company_id=7)
    view.ids[("project", "s1", 0)] = (101, "Tower")
    view.ids[("project", "s2", 0)] = (101, None)
    view.names[("job_site", "s2")] = ("Annex", None)
    memo = domain.Validation(view)
    dims = ("cc", "ea")
    first = memo.errors(Module.PRODUCTION_QUANTITY, "s1", dims, {"units": "2"})
    second = memo.errors(Module.PRODUCTION_QUANTITY, "s2", dims, {"units": "2"})
    assert first == ("Cost code cc is not mapped for project Tower",)
    assert second == ("Cost code cc is not mapped for project Annex",)


def test_a_cost_code_mapped_for_one_project_only_is_missing_on_the_other() -> None:
    """Cost codes are mapped per project: one batch, the same cost code on job sites of two projects (named alike)."""
    view = AccountMappings(procore_company_id=7)
    view.ids[("project", "s1", 0)] = (101, "Main")
    view.ids[("project", "s2", 0)] = (102, "Main")
    view.ids[("cost_code", "cc", 101)] = (9001, None)
    memo = domain.Validation(view)
    dims = ("cc", "ea")
    assert memo.errors(Module.PRODUCTION_QUANTITY, "s1", dims, {"units": "2"}) == ()
    assert memo.errors(Module.PRODUCTION_QUANTITY, "s2", dims, {"units": "2"}) == (
        "Cost code cc is not mapped for project Main",
    )
