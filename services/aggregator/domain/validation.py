"""Validation: which mappings an entry needs, the reasons it is Non publishable (named in the help article's words),
and why a job site cannot be published right now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Protocol

from services.aggregator.domain.aggregation import MODULE_DIMS, EntryRef
from shared import labels
from shared.events import (
    Module,
    ProcoreEntity,
    ReferenceKind,
)


class MappingView(Protocol):
    """What validation needs to know about an account's setup, mappings and names."""

    procore_company_id: int | None

    def procore_id(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> int | None: ...

    def procore_name(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None: ...

    def label(self, kind: ReferenceKind, entity_id: str) -> str: ...

    def broken_reason(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None:
        """Why a mapping was cleared (its Procore entity disappeared), if it was."""


def validate(
    module: Module,
    job_site_id: str,
    dims: Mapping[str, str | None],
    content: Mapping[str, str] | None,
    m: MappingView,
) -> tuple[str, ...]:
    """Human-readable reasons an entry cannot be published, one per missing mapping (one entry: `Validation` says
    it for many against one view, each part worked out once)."""
    return Validation(m).errors(module, job_site_id, tuple(dims.get(name) for name in MODULE_DIMS[module]), content)


_NEEDS: dict[Module, tuple[tuple[str, ProcoreEntity, ReferenceKind, bool], ...]] = {
    Module.MANPOWER: (("company_id", ProcoreEntity.VENDOR, ReferenceKind.COMPANY, False),),
    Module.TIMECARD: (
        ("employee_id", ProcoreEntity.EMPLOYEE, ReferenceKind.EMPLOYEE, False),
        ("pay_id", ProcoreEntity.PAYROLL_TYPE, ReferenceKind.PAY_ID, False),
        ("cost_code_id", ProcoreEntity.COST_CODE, ReferenceKind.COST_CODE, True),
        ("pay_class_id", ProcoreEntity.CLASSIFICATION, ReferenceKind.PAY_CLASS, False),
    ),
    Module.PRODUCTION_QUANTITY: (("cost_code_id", ProcoreEntity.COST_CODE, ReferenceKind.COST_CODE, True),),
}
"""The mappings an entry of each module needs, in the order `validate` reports them: (dim, entity, its name's kind,
whether the mapping is per project)."""


class Validation:
    """`validate` for many entries of one account against one view of its mappings, each part worked out once: an
    entry's errors are its job site's (no Procore company, no project) followed by one per missing mapping of its
    dimensions, and a batch's entries share most of those parts (one employee on many days and cost codes, one cost
    code for many employees). What it remembers is keyed by everything a part depends on, so each entry gets what a
    fresh `Validation` would say (`tests/unit/test_aggregator_validation.py`); only valid while the view does not
    change (one batch)."""

    def __init__(self, m: MappingView) -> None:
        self.m = m
        self._sites: dict[str, tuple[int | None, tuple[str, ...], str]] = {}
        self._parts: dict[tuple[ProcoreEntity, str, int | None, str | None], str | None] = {}

    def errors(
        self, module: Module, job_site_id: str, dims: tuple[str | None, ...], content: Mapping[str, str] | None
    ) -> tuple[str, ...]:
        """`validate(module, job_site_id, <dims by MODULE_DIMS>, content, m)`."""
        site = self._sites.get(job_site_id)
        if site is None:
            site = self._sites[job_site_id] = self._site(job_site_id)
        project, errors, project_label = site
        if module is Module.PRODUCTION_QUANTITY and content is not None:
            errors = self._fractional(dims, content) + errors
        for index, entity, kind, scoped, names_project in _NEEDS_BY_INDEX[module]:
            mc_id = dims[index]
            if mc_id is None or (scoped and project is None):
                continue
            key = (entity, mc_id, project if scoped else None, project_label if names_project else None)
            if key in self._parts:
                part = self._parts[key]
            else:
                part = self._parts[key] = self._missing(entity, kind, mc_id, project if scoped else None, project_label)
            if part is not None:
                errors += (part,)
        return errors

    def _site(self, job_site_id: str) -> tuple[int | None, tuple[str, ...], str]:
        m = self.m
        errors: tuple[str, ...] = (labels.NOT_CONNECTED,) if m.procore_company_id is None else ()
        project = m.procore_id(ProcoreEntity.PROJECT, job_site_id)
        site_label = m.label(ReferenceKind.JOB_SITE, job_site_id)
        if project is None:
            text = labels.REASONS[ProcoreEntity.PROJECT].format(label=site_label)
            broken = m.broken_reason(ProcoreEntity.PROJECT, job_site_id)
            errors += (f"{text}: {broken}" if broken else text,)
        return project, errors, m.procore_name(ProcoreEntity.PROJECT, job_site_id) or site_label

    def _missing(
        self, entity: ProcoreEntity, kind: ReferenceKind, mc_id: str, project: int | None, project_label: str
    ) -> str | None:
        m = self.m
        if m.procore_id(entity, mc_id, project) is not None:
            return None
        text = labels.REASONS[entity].format(label=m.label(kind, mc_id), project=project_label)
        broken = m.broken_reason(entity, mc_id, project)
        return f"{text}: {broken}" if broken else text

    def _fractional(self, dims: tuple[str | None, ...], content: Mapping[str, str]) -> tuple[str, ...]:
        units = Decimal(content["units"])
        if units == units.to_integral_value():
            return ()
        cost_code_id, unit = dims  # MODULE_DIMS[PRODUCTION_QUANTITY]
        label = self.m.label(ReferenceKind.COST_CODE, str(cost_code_id))
        return (labels.FRACTIONAL_QUANTITY.format(units=content["units"], unit=unit, label=label),)


_NEEDS_BY_INDEX: dict[Module, tuple[tuple[int, ProcoreEntity, ReferenceKind, bool, bool], ...]] = {
    module: tuple(
        (MODULE_DIMS[module].index(dim), entity, kind, scoped, "{project}" in labels.REASONS[entity])
        for dim, entity, kind, scoped in needs
    )
    for module, needs in _NEEDS.items()
}
"""`_NEEDS` by the dimension's place in an entry's `dims`, and whether the error's wording names the project."""


def mapping_needs(ref: EntryRef) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The (entity, MobiClocks id) mappings and (kind, id) names `validate` may look up for an entry."""
    ids = {(ProcoreEntity.PROJECT.value, ref.job_site_id)}
    names = {(ReferenceKind.JOB_SITE.value, ref.job_site_id)}
    for dim, value in zip(MODULE_DIMS[ref.module], ref.dims, strict=True):
        if value is None or dim not in ENTITY_OF_DIM:
            continue
        entity, kind = ENTITY_OF_DIM[dim]
        ids.add((entity.value, value))
        names.add((kind.value, value))
    return ids, names


Needs = set[tuple[str, str, str]]


def mapping_needs_of(refs: Iterable[tuple[str, EntryRef]]) -> tuple[Needs, Needs]:
    """`mapping_needs` of many (account, entry) pairs at once, as (account, entity, id) and (account, kind, id)."""
    sites: set[tuple[str, str]] = set()
    values: set[tuple[str, str, str]] = set()
    for account, ref in refs:
        sites.add((account, ref.job_site_id))
        dims = ref.dims
        for index, dim in _MAPPED_DIMS[ref.module]:
            if (value := dims[index]) is not None:
                values.add((account, dim, value))
    project, job_site = ProcoreEntity.PROJECT.value, ReferenceKind.JOB_SITE.value
    ids = {(a, project, s) for a, s in sites}
    names = {(a, job_site, s) for a, s in sites}
    for account, dim, value in values:
        entity, kind = ENTITY_OF_DIM[dim]
        ids.add((account, entity.value, value))
        names.add((account, kind.value, value))
    return ids, names


ENTITY_OF_DIM: dict[str, tuple[ProcoreEntity, ReferenceKind]] = {
    "company_id": (ProcoreEntity.VENDOR, ReferenceKind.COMPANY),
    "employee_id": (ProcoreEntity.EMPLOYEE, ReferenceKind.EMPLOYEE),
    "pay_id": (ProcoreEntity.PAYROLL_TYPE, ReferenceKind.PAY_ID),
    "cost_code_id": (ProcoreEntity.COST_CODE, ReferenceKind.COST_CODE),
    "pay_class_id": (ProcoreEntity.CLASSIFICATION, ReferenceKind.PAY_CLASS),
}


_MAPPED_DIMS: dict[Module, tuple[tuple[int, str], ...]] = {
    module: tuple((index, dim) for index, dim in enumerate(dims) if dim in ENTITY_OF_DIM)
    for module, dims in MODULE_DIMS.items()
}
"""The dimensions of each module that name something mapped to Procore, by their place in an entry's `dims`."""


def publish_blocker(m: MappingView, job_site_id: str) -> str | None:
    """Why entries of this job site cannot be published right now (None: they can)."""
    if m.procore_company_id is None:
        return "Choose the Procore company in Setup, then publish again"
    if m.procore_id(ProcoreEntity.PROJECT, job_site_id) is None:
        site = m.label(ReferenceKind.JOB_SITE, job_site_id)
        text = f"Job site {site} is not mapped to a Procore project"
        if broken := m.broken_reason(ProcoreEntity.PROJECT, job_site_id):
            text = f"{text} ({broken})"
        return f"{text}; map it in Setup, then publish again"
    return None
