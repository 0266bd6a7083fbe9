"""Non publishable errors name exactly which mapping is missing."""

from datetime import date

from services.aggregator.adapters.replica import AccountMappings
from services.aggregator.domain import procore_payload, validate
from shared.events import Module, ProcoreEntity


def mappings() -> AccountMappings:
    m = AccountMappings(procore_company_id=1)
    m.names[("job_site", "s1")] = ("Tower A", None)
    m.names[("cost_code", "cc1")] = ("Concrete", "03-300")
    m.names[("pay_id", "OT")] = ("Overtime", "OT")
    return m


def test_missing_project_is_named():
    errors = validate(Module.MANPOWER, "s1", {"company_id": "c1", "crew_tag": None}, None, mappings())
    assert "Job site Tower A is not mapped to a Procore project" in errors


def test_cost_code_error_names_code_and_project():
    m = mappings()
    m.ids[("project", "s1", 0)] = (100, "Tower A")
    dims = {"employee_id": "e1", "pay_id": "OT", "cost_code_id": "cc1", "pay_class_id": None}
    errors = validate(Module.TIMECARD, "s1", dims, {"hours": "8.00"}, m)
    assert "Cost code 03-300 Concrete is not mapped for project Tower A" in errors
    assert "Pay ID OT Overtime has no payroll item" in errors


def test_fractional_quantity_is_an_error_not_rounded():
    m = mappings()
    m.ids[("project", "s1", 0)] = (100, "Tower A")
    m.ids[("cost_code", "cc1", 100)] = (5, "Concrete")
    dims = {"cost_code_id": "cc1", "unit_of_measure": "m3"}
    assert validate(Module.PRODUCTION_QUANTITY, "s1", dims, {"units": "4"}, m) == ()
    (error,) = validate(Module.PRODUCTION_QUANTITY, "s1", dims, {"units": "2.5"}, m)
    assert "2.5 m3" in error
    assert "whole numbers" in error


def test_payload_uses_mapped_ids():
    import uuid

    m = mappings()
    m.ids[("project", "s1", 0)] = (100, "Tower A")
    m.ids[(ProcoreEntity.VENDOR.value, "c1", 0)] = (9, "Acme")
    body = procore_payload(
        Module.MANPOWER,
        uuid.uuid4(),
        date(2026, 11, 20),
        "s1",
        {"company_id": "c1", "crew_tag": "A"},
        {"manpower": "2", "total_hours": "15.00", "average_hours": "7.50"},
        m,
    )
    assert body["contact_id"] == 9
    assert body["num_workers"] == 2
    assert body["num_hours"] == "7.50"
    assert "[mc:" in body["notes"]
    assert body["notes"].startswith("A ")


def test_a_broken_mapping_says_why():
    m = mappings()
    m.ids[("project", "s1", 0)] = (100, "Tower A")
    m.broken[("cost_code", "cc1", 100)] = "Procore cost code Concrete no longer exists in Procore"
    dims = {"cost_code_id": "cc1", "unit_of_measure": "m3"}
    (error,) = validate(Module.PRODUCTION_QUANTITY, "s1", dims, {"units": "4"}, m)
    assert error == (
        "Cost code 03-300 Concrete is not mapped for project Tower A: "
        "Procore cost code Concrete no longer exists in Procore"
    )
