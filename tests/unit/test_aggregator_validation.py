"""`domain.fully_mapped` (the hot path's shortcut) says yes exactly when `domain.validate` finds no missing mapping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.aggregator import domain
from services.aggregator.adapters.replica import AccountMappings
from shared.events import Module, ProcoreEntity

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
                    m.ids[(entity.value, mc_id, project)] = (draw(st.sampled_from(PROJECTS[1:])), None)
                else:
                    m.broken[(entity.value, mc_id, project)] = "gone"
    return m


@given(
    view=views(),
    module=st.sampled_from([Module.MANPOWER, Module.TIMECARD]),
    site=st.sampled_from(IDS),
    values=st.lists(st.sampled_from([None, *IDS]), min_size=4, max_size=4),
)
def test_fully_mapped_is_validate_without_errors(
    view: AccountMappings, module: Module, site: str, values: list[str | None]
) -> None:
    dims = dict(zip(domain.MODULE_DIMS[module], values, strict=False))
    content = {"hours": "1.00"}
    assert domain.fully_mapped(module, site, dims, view) == (domain.validate(module, site, dims, content, view) == ())
