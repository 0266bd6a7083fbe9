"""Seeding companies with reference data (explicit entities and bulk-generated ones)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from sandbox.procore.state import (
    DEFAULT_CLIENT_ID,
    Company,
    CostCode,
    LineItemType,
    Person,
    Project,
    SandboxState,
    TimeType,
    Vendor,
    WorkClassification,
)


class LineItemTypeSeed(BaseModel):
    id: int | None = None
    name: str = "Labor"
    code: str = "L"
    base_type: str = "labor"


class CostCodeSeed(BaseModel):
    id: int | None = None
    full_code: str
    name: str
    origin_id: str | None = None
    line_item_types: list[LineItemTypeSeed] | None = None  # None = Labor + Material


class WorkClassificationSeed(BaseModel):
    id: int | None = None
    name: str
    abbreviation: str | None = None
    project_ids: list[int] = Field(default_factory=list)


class ProjectSeed(BaseModel):
    id: int | None = None
    name: str
    project_number: str | None = None
    active: bool = True
    origin_id: str | None = None
    cost_codes: list[CostCodeSeed] = Field(default_factory=list)
    work_classifications: list[WorkClassificationSeed] = Field(default_factory=list)


class VendorSeed(BaseModel):
    id: int | None = None
    name: str
    abbreviated_name: str | None = None
    origin_id: str | None = None
    is_active: bool = True


class PersonSeed(BaseModel):
    id: int | None = None
    first_name: str
    last_name: str = ""
    employee_id: str | None = None
    is_employee: bool = True
    user_id: int | None = None
    work_classification_id: int | None = None
    origin_id: str | None = None
    email: str | None = None


class TimeTypeSeed(BaseModel):
    id: int | None = None
    time_type: str
    abbreviated_time_type: str
    is_global: bool = Field(default=True, alias="global")

    model_config = {"populate_by_name": True}


class GenerateSeed(BaseModel):
    projects: int = 0
    vendors: int = 0
    people: int = 0
    work_classifications: int = 0
    cost_codes_per_project: int = 0


class CompanySeed(BaseModel):
    id: int | None = None
    name: str = "Sandbox Construction"
    is_active: bool = True
    installed_clients: list[str] = Field(default_factory=lambda: [DEFAULT_CLIENT_ID])
    projects: list[ProjectSeed] = Field(default_factory=list)
    vendors: list[VendorSeed] = Field(default_factory=list)
    people: list[PersonSeed] = Field(default_factory=list)
    work_classifications: list[WorkClassificationSeed] = Field(default_factory=list)
    # None on a new company = Procore's global Regular/Overtime/Double time types.
    timecard_time_types: list[TimeTypeSeed] | None = None
    generate: GenerateSeed = Field(default_factory=GenerateSeed)


DEFAULT_TIME_TYPES = [
    TimeTypeSeed(time_type="Regular Time", abbreviated_time_type="REG"),
    TimeTypeSeed(time_type="Overtime", abbreviated_time_type="OT"),
    TimeTypeSeed(time_type="Double Time", abbreviated_time_type="DT"),
]


def _line_item_types(state: SandboxState, seeds: list[LineItemTypeSeed] | None) -> list[LineItemType]:
    if seeds is None:
        seeds = [
            LineItemTypeSeed(name="Labor", code="L", base_type="labor"),
            LineItemTypeSeed(name="Material", code="M", base_type="material"),
        ]
    return [LineItemType(state.claim_id(s.id), s.name, s.code, s.base_type) for s in seeds]


def _add_cost_code(state: SandboxState, project: Project, seed: CostCodeSeed) -> CostCode:
    stamp = state.next_timestamp()
    code = CostCode(
        id=state.claim_id(seed.id),
        project_id=project.id,
        full_code=seed.full_code,
        name=seed.name,
        origin_id=seed.origin_id,
        line_item_types=_line_item_types(state, seed.line_item_types),
        created_at=stamp,
        updated_at=stamp,
    )
    project.cost_codes[code.id] = code
    return code


def _add_classification(state: SandboxState, company: Company, seed: WorkClassificationSeed) -> int:
    stamp = state.next_timestamp()
    wc = WorkClassification(state.claim_id(seed.id), seed.name, seed.abbreviation, list(seed.project_ids), stamp, stamp)
    company.work_classifications[wc.id] = wc
    return wc.id


def seed_company(state: SandboxState, seed: CompanySeed) -> dict[str, Any]:
    """Create (or extend, when the id exists) a company; returns every id created."""
    company = state.companies.get(seed.id) if seed.id is not None else None
    is_new = company is None
    if company is None:
        company = Company(state.claim_id(seed.id), seed.name, seed.is_active)
        state.companies[company.id] = company
    for client_id in seed.installed_clients:
        if client_id in state.clients:
            state.clients[client_id].company_ids.add(company.id)

    result: dict[str, Any] = {
        "company_id": company.id,
        "projects": [],
        "vendors": [],
        "people": [],
        "work_classifications": [],
        "timecard_time_types": [],
    }
    gen = seed.generate
    project_seeds = list(seed.projects) + [
        ProjectSeed(name=f"Generated Project {i + 1}", project_number=f"GP-{i + 1:04d}") for i in range(gen.projects)
    ]
    for ps in project_seeds:
        stamp = state.next_timestamp()
        project = Project(
            state.claim_id(ps.id),
            company.id,
            ps.name,
            ps.project_number,
            ps.active,
            ps.origin_id,
            stamp,
            stamp,
        )
        company.projects[project.id] = project
        code_seeds = list(ps.cost_codes) + [
            CostCodeSeed(full_code=f"{i + 1:02d}-{(i + 1) * 100}", name=f"Generated Code {i + 1}")
            for i in range(gen.cost_codes_per_project)
        ]
        codes = [_add_cost_code(state, project, cs) for cs in code_seeds]
        wc_ids = [
            _add_classification(state, company, wcs.model_copy(update={"project_ids": [project.id]}))
            for wcs in ps.work_classifications
        ]
        result["projects"].append(
            {
                "id": project.id,
                "name": project.name,
                "cost_codes": [
                    {
                        "id": c.id,
                        "full_code": c.full_code,
                        "line_item_types": [{"id": t.id, "base_type": t.base_type} for t in c.line_item_types],
                    }
                    for c in codes
                ],
                "work_classifications": wc_ids,
            }
        )

    wc_seeds = list(seed.work_classifications) + [
        WorkClassificationSeed(name=f"Generated Class {i + 1}", abbreviation=f"GC{i + 1}")
        for i in range(gen.work_classifications)
    ]
    result["work_classifications"] += [_add_classification(state, company, s) for s in wc_seeds]

    vendor_seeds = list(seed.vendors) + [VendorSeed(name=f"Generated Vendor {i + 1}") for i in range(gen.vendors)]
    for vs in vendor_seeds:
        stamp = state.next_timestamp()
        vendor = Vendor(state.claim_id(vs.id), vs.name, vs.abbreviated_name, vs.origin_id, vs.is_active, stamp, stamp)
        company.vendors[vendor.id] = vendor
        result["vendors"].append(vendor.id)

    people_seeds = list(seed.people) + [
        PersonSeed(first_name="Worker", last_name=f"{i + 1:05d}", employee_id=f"E{i + 1:05d}")
        for i in range(gen.people)
    ]
    for pe in people_seeds:
        person = Person(
            state.claim_id(pe.id),
            pe.first_name,
            pe.last_name,
            pe.employee_id,
            pe.is_employee,
            pe.user_id,
            pe.work_classification_id,
            pe.origin_id,
            pe.email,
        )
        company.people[person.id] = person
        result["people"].append(person.id)

    tt_seeds = seed.timecard_time_types
    if tt_seeds is None:
        tt_seeds = DEFAULT_TIME_TYPES if is_new else []
    for ts in tt_seeds:
        tt = TimeType(state.claim_id(ts.id), ts.time_type, ts.abbreviated_time_type, ts.is_global)
        company.time_types[tt.id] = tt
        result["timecard_time_types"].append({"id": tt.id, "abbreviated_time_type": tt.abbreviated_time_type})
    return result
