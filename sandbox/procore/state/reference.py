"""A company's reference data: projects and their cost codes, vendors, people, work classifications, time types."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class LineItemType:
    id: int
    name: str
    code: str
    base_type: str  # labor | material | equipment | ...


@dataclass
class CostCode:
    id: int
    project_id: int
    full_code: str
    name: str
    origin_id: str | None
    line_item_types: list[LineItemType]
    created_at: datetime
    updated_at: datetime


@dataclass
class Project:
    id: int
    company_id: int
    name: str
    project_number: str | None
    active: bool
    origin_id: str | None
    created_at: datetime
    updated_at: datetime
    cost_codes: dict[int, CostCode] = field(default_factory=dict)


@dataclass
class Vendor:
    id: int
    name: str
    abbreviated_name: str | None
    origin_id: str | None
    is_active: bool
    created_at: datetime
    updated_at: datetime


@dataclass
class Person:
    id: int
    first_name: str
    last_name: str
    employee_id: str | None
    is_employee: bool
    user_id: int | None
    work_classification_id: int | None
    origin_id: str | None
    email: str | None
    is_active: bool = True

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass
class WorkClassification:
    id: int
    name: str
    abbreviation: str | None
    project_ids: list[int]
    created_at: datetime
    updated_at: datetime


@dataclass
class TimeType:
    id: int
    time_type: str
    abbreviated_time_type: str
    is_global: bool


@dataclass
class Company:
    id: int
    name: str
    is_active: bool
    projects: dict[int, Project] = field(default_factory=dict)
    vendors: dict[int, Vendor] = field(default_factory=dict)
    people: dict[int, Person] = field(default_factory=dict)
    work_classifications: dict[int, WorkClassification] = field(default_factory=dict)
    time_types: dict[int, TimeType] = field(default_factory=dict)
