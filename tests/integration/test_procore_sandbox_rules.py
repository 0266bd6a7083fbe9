"""Procore's stricter rules in the sandbox (`sandbox/procore/rules.py`), each off by default and switched on per
company/project through the control API, over real HTTP with requests checked against the OpenAPI subset."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from tests.integration.test_procore_sandbox import Procore, seed
from tests.sandbox_fixtures import run_sandbox

TODAY = date(2024, 5, 2)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


@pytest.fixture
def control(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{base_url}/_sandbox", timeout=10) as client:
        client.post("/reset").raise_for_status()
        client.put("/settings", json={"today": TODAY.isoformat()}).raise_for_status()
        yield client


@pytest.fixture
def world(control: httpx.Client, base_url: str) -> dict[str, Any]:
    ids = seed(control)
    pid = ids["projects"][0]["id"]
    return ids | {
        "api": Procore(base_url, ids["company_id"]),
        "pid": pid,
        "path": f"/rest/v1.0/projects/{pid}/timecard_entries",
    }


def _entry(world: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"timecard_entry": {"party_id": world["people"][0], "date": TODAY.isoformat(), **fields}}


def test_start_stop_project_refuses_hours_only_and_takes_times(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    assert api.post(world["path"], _entry(world, hours="8")).status_code == 201  # default: the hours mode
    rules = control.put(f"/rules/projects/{world['pid']}", json={"time_entry_mode": "start_stop"})
    assert rules.json()["time_entry_mode"] == "start_stop"
    refused = api.post(world["path"], _entry(world, hours="8"))
    assert refused.status_code == 422
    body = refused.json()
    assert set(body["errors"]) == {"time_in", "time_out"}
    assert "start and stop times" in body["message"]
    timed = api.post(
        world["path"],
        _entry(world, hours="7.5", time_in="2024-05-02T07:00:00Z", time_out="2024-05-02T15:00:00Z", lunch_time="30"),
    )
    assert timed.status_code == 201
    assert timed.json()["lunch_time"] == 30
    other_project = f"/rest/v1.0/projects/{world['projects'][1]['id']}/timecard_entries"
    assert api.post(other_project, _entry(world, hours="8")).status_code == 201  # per project


def test_pending_only_list_drops_approved_entries(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    created = api.post(world["path"], _entry(world, hours="8", origin_id=77)).json()
    control.patch(f"/records/timecard_entries/{created['id']}", json={"approval_status": "approved"}).raise_for_status()
    params = {"log_date": TODAY.isoformat()}
    assert [e["id"] for e in api.get(world["path"], params=params).json()] == [created["id"]]  # default: all
    control.put(f"/rules/companies/{world['company_id']}", json={"pending_only_timecard_list": True})
    assert api.get(world["path"], params=params).json() == []
    # The company (Timecard tool) list still finds it, whatever its approval status.
    company_list = api.get(
        f"/rest/v1.0/companies/{world['company_id']}/timecard_entries",
        params={"start_date": TODAY.isoformat(), "end_date": TODAY.isoformat()},
    ).json()
    assert [(e["id"], e["approval_status"], e["origin_id"]) for e in company_list] == [(created["id"], "approved", 77)]


def test_completed_day_refuses_every_write_to_it(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    created = api.post(world["path"], _entry(world, hours="8")).json()
    control.put(f"/rules/projects/{world['pid']}", json={"completed_days": [TODAY.isoformat()]})
    for response in (
        api.post(world["path"], _entry(world, hours="8")),
        api.patch(f"{world['path']}/{created['id']}", {"timecard_entry": {"hours": "9"}}),
        api.delete(f"{world['path']}/{created['id']}"),
        api.post(
            f"/rest/v1.0/projects/{world['pid']}/manpower_logs",
            {"manpower_log": {"date": TODAY.isoformat(), "num_workers": 1}},
        ),
    ):
        assert response.status_code == 422, response.text
        assert "Daily Log for 2024-05-02 has been completed" in response.json()["message"]
    # another day of the same project is open
    assert api.post(world["path"], _entry(world, hours="8", date="2024-05-01")).status_code == 201
    control.put(f"/rules/projects/{world['pid']}", json={"completed_days": []})
    assert api.post(world["path"], _entry(world, hours="8")).status_code == 201


def test_project_directory_refuses_people_outside_it(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    ann, bob = world["people"][0], world["people"][1]
    control.put(f"/rules/projects/{world['pid']}", json={"directory": [ann]})
    assert api.post(world["path"], _entry(world, hours="8")).status_code == 201
    refused = api.post(world["path"], {"timecard_entry": {"party_id": bob, "hours": "8"}})
    assert refused.status_code == 422
    assert refused.json()["errors"] == {"party_id": [f"{bob} is not in the directory of project {world['pid']}"]}
    control.put(f"/rules/projects/{world['pid']}", json={"enforce_directory": False})
    assert api.post(world["path"], {"timecard_entry": {"party_id": bob, "hours": "8"}}).status_code == 201


def test_second_precision_makes_two_quick_writes_look_the_same(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    control.put(f"/rules/companies/{world['company_id']}", json={"timestamp_precision": "second"})
    while time.time() % 1 > 0.5:  # both writes inside one second
        time.sleep(0.05)
    created = api.post(world["path"], _entry(world, hours="8")).json()
    patched = api.patch(f"{world['path']}/{created['id']}", {"timecard_entry": {"hours": "9"}}).json()
    assert patched["hours"] == "9.0"
    assert patched["updated_at"] == created["updated_at"]
    assert created["updated_at"].endswith(".000000Z")


@pytest.mark.parametrize("answer", ["404", "403", "deleted_at"])
def test_get_of_a_deleted_record_answers_as_the_rule_says(
    control: httpx.Client, world: dict[str, Any], answer: str
) -> None:
    api: Procore = world["api"]
    created = api.post(world["path"], _entry(world, hours="8")).json()
    control.put(f"/rules/companies/{world['company_id']}", json={"deleted_answer": answer})
    api.delete(f"{world['path']}/{created['id']}").raise_for_status()
    shown = api.get(f"{world['path']}/{created['id']}", validate=False)
    if answer == "deleted_at":
        assert shown.status_code == 200
        assert shown.json()["deleted_at"] is not None
    else:
        assert shown.status_code == int(answer)


def test_rate_limit_per_token_is_shared_across_companies(
    control: httpx.Client, base_url: str, world: dict[str, Any]
) -> None:
    other = seed(control, name="Other Co")["company_id"]
    control.put("/settings", json={"rate_limit_spike": 3, "rate_limit_hourly": 50})
    api: Procore = world["api"]
    other_api = Procore(base_url, other)
    other_api.token = api.token  # one token (the default client's service account) for both companies
    for _ in range(3):
        assert api.get("/rest/v1.0/vendors", params={"company_id": world["company_id"]}).status_code == 200
    assert other_api.get("/rest/v1.0/vendors", params={"company_id": other}).status_code == 200  # per company
    control.put("/rules", json={"rate_limit_scope": "token"})
    for _ in range(3):
        assert api.get("/rest/v1.0/vendors", params={"company_id": world["company_id"]}).status_code == 200
    shared = other_api.get("/rest/v1.0/vendors", params={"company_id": other})
    assert shared.status_code == 429  # the other company spends the same token's budget


# ---------------------------------------------------------------- v1.1 bulk_create (per-item results)


def test_bulk_create_answers_per_item_and_keeps_the_limits(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    pid = world["pid"]
    path = f"/rest/v1.1/projects/{pid}/project_timecard_entries/bulk_create"
    ann, bob = world["people"][0], world["people"][1]
    control.put(f"/rules/projects/{pid}", json={"directory": [ann]})
    items = [
        {"project_id": pid, "date": TODAY.isoformat(), "hours": "8", "party_id": ann, "origin_id": "501"},
        {"project_id": pid, "date": TODAY.isoformat(), "hours": "8", "party_id": bob, "origin_id": "502"},
        {"project_id": pid, "date": TODAY.isoformat(), "hours": "6.5", "party_id": ann, "origin_id": "503"},
    ]
    answer = api.post(path, {"timecard_entries": items})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert [(e["origin_id"], e["hours"], e["project_id"]) for e in body["timecard_entries"]] == [
        ("501", "8.0", pid),
        ("503", "6.5", pid),
    ]
    (refused,) = body["errors"]
    assert (refused["index"], refused["origin_id"]) == (1, "502")
    assert "directory" in refused["errors"]["party_id"][0]
    # the same origin_id again: refused item by item, nothing created → 422 with the same shape
    again = api.post(path, {"timecard_entries": items[:1]})
    assert again.status_code == 422
    assert again.json()["errors"][0]["errors"] == {"origin_id": ["has already been taken"]}
    too_many = [dict(items[0], origin_id=str(600 + n)) for n in range(26)]
    assert api.post(path, {"timecard_entries": too_many}).status_code == 400
    control.put(f"/rules/companies/{world['company_id']}", json={"bulk_create_forbidden": True})
    forbidden = api.post(path, {"timecard_entries": [dict(items[0], origin_id="700")]})
    assert forbidden.status_code == 403
    assert "beta access" in forbidden.json()["message"]


def test_directory_rule_enforces_the_served_project_directory(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    ann, bob = world["people"][0], world["people"][1]
    control.put(f"/rules/projects/{world['pid']}", json={"enforce_directory": True})
    assert api.post(world["path"], {"timecard_entry": {"party_id": bob, "hours": "8"}}).status_code == 201  # everyone
    people = control.put(
        f"/projects/{world['pid']}/people", params={"company_id": world["company_id"]}, json={"person_ids": [ann]}
    )
    assert people.status_code == 200, people.text
    assert api.post(world["path"], {"timecard_entry": {"party_id": bob, "hours": "8"}}).status_code == 422
    assert api.post(world["path"], {"timecard_entry": {"party_id": ann, "hours": "8"}}).status_code == 201
