"""The Procore record of an entry: its marker, origin id and payload (whole quantities only)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from services.aggregator.domain.validation import MappingView
from shared.events import (
    Module,
    ProcoreEntity,
)


def marker_for(entry_uuid: uuid.UUID) -> str:
    """A short tag written into Procore records so a publisher can find the record it created."""
    return f"[mc:{entry_uuid.hex[:16]}]"


def origin_id_for(entry_uuid: uuid.UUID) -> int:
    """Procore's timecard `origin_id` is an integer: a stable 53-bit value derived from the entry id."""
    return entry_uuid.int >> (128 - 53)


def procore_payload(
    module: Module,
    entry_uuid: uuid.UUID,
    work_date: date,
    job_site_id: str,
    dims: Mapping[str, str | None],
    content: Mapping[str, str],
    m: MappingView,
) -> dict[str, Any]:
    """The Procore record body (inside its wrapper key) for a valid entry."""
    project = m.procore_id(ProcoreEntity.PROJECT, job_site_id)
    marker = marker_for(entry_uuid)
    if module is Module.MANPOWER:
        crew = dims.get("crew_tag")
        return {
            "date": work_date.isoformat(),
            "num_workers": int(content["manpower"]),
            "num_hours": content["average_hours"],
            "contact_id": m.procore_id(ProcoreEntity.VENDOR, str(dims["company_id"])),
            "notes": f"{crew} {marker}" if crew else marker,
        }
    if module is Module.TIMECARD:
        body: dict[str, Any] = {
            "date": work_date.isoformat(),
            "hours": content["hours"],
            "party_id": m.procore_id(ProcoreEntity.EMPLOYEE, str(dims["employee_id"])),
            "timecard_time_type_id": m.procore_id(ProcoreEntity.PAYROLL_TYPE, str(dims["pay_id"])),
            "origin_id": origin_id_for(entry_uuid),
            "origin_data": marker,
            "description": marker,
        }
        if dims.get("cost_code_id"):
            body["cost_code_id"] = m.procore_id(ProcoreEntity.COST_CODE, str(dims["cost_code_id"]), project)
        return body
    units = Decimal(content["units"])
    if units != units.to_integral_value():
        raise FractionalQuantity(
            f"Procore takes whole quantities; {content['units']} {dims.get('unit_of_measure')} is fractional"
        )
    return {
        "date": work_date.isoformat(),
        "quantity": int(units),
        "unit": dims.get("unit_of_measure"),
        "cost_code_id": m.procore_id(ProcoreEntity.COST_CODE, str(dims["cost_code_id"]), project),
        "description": marker,
    }


class FractionalQuantity(ValueError):
    """Procore quantity logs take whole numbers only; never round silently."""
