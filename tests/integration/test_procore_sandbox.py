"""The Procore sandbox over real HTTP, with every request/response checked against openapi-subset.json."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.procore.spec import (
    SpecValidationError,
    has_operation,
    validate_httpx_request,
    validate_httpx_response,
    validate_request,
)
from tests.sandbox_fixtures import run_sandbox

TODAY = date(2024, 5, 2)
YESTERDAY = "2024-05-01"
REPO = Path(__file__).resolve().parents[2]


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


class Procore:
    """A tiny Procore client that checks each call against the spec (request always, 2xx responses)."""

    def __init__(
        self,
        base_url: str,
        company_id: int | None,
        client_id: str = "sandbox-client",
        secret: str = "sandbox-secret",
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10)
        self.company_id = company_id
        token = self.http.post(
            "/oauth/token",
            json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )
        token.raise_for_status()
        self.token = token.json()["access_token"]

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        company: bool = True,
        validate: bool = True,
        timeout: float | None = None,
    ) -> httpx.Response:
        hdrs = {"Authorization": f"Bearer {self.token}"}
        if company and self.company_id is not None:
            hdrs["Procore-Company-Id"] = str(self.company_id)
        hdrs.update(headers or {})
        request = self.http.build_request(
            method,
            path,
            json=json_body,
            params=params,
            headers=hdrs,
            timeout=timeout if timeout is not None else 10,
        )
        documented = has_operation(method, request.url.path)
        if validate and documented:
            validate_httpx_request(request)
        response = self.http.send(request)
        if validate and documented and response.status_code < 300:
            validate_httpx_response(response)
        return response

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return self.call("POST", path, json_body=body, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> httpx.Response:
        return self.call("PATCH", path, json_body=body, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("DELETE", path, **kw)


def seed(control: httpx.Client, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Acme Builders",
        "projects": [
            {
                "name": "Tower A",
                "project_number": "TA-1",
                "cost_codes": [
                    {"full_code": "03-300", "name": "Concrete"},
                    {"full_code": "05-100", "name": "Steel"},
                ],
                "work_classifications": [{"name": "Tower Crane Operator", "abbreviation": "TCO"}],
            },
            {"name": "Depot B", "cost_codes": [{"full_code": "01-000", "name": "General"}]},
        ],
        "vendors": [{"name": "Concrete Crew Inc", "origin_id": "MC-1"}, {"name": "Steel Erectors"}],
        "people": [
            {"first_name": "Ann", "last_name": "Lee", "employee_id": "E1"},
            {"first_name": "Bob", "last_name": "Ray", "employee_id": "E2"},
            {"first_name": "Cat", "last_name": "Sub", "is_employee": False},
        ],
        "work_classifications": [{"name": "Carpenter", "abbreviation": "CARP"}],
    }
    body.update(extra)
    response = control.post("/companies", json=body)
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


@pytest.fixture
def world(control: httpx.Client, base_url: str) -> dict[str, Any]:
    ids = seed(control)
    return ids | {"api": Procore(base_url, ids["company_id"])}


# ---------------------------------------------------------------- OAuth


def test_client_credentials_token_json_and_form(base_url: str, control: httpx.Client) -> None:
    body = {
        "grant_type": "client_credentials",
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
    }
    validate_request("POST", f"{base_url}/oauth/token", {"Content-Type": "application/json"}, body)
    response = httpx.post(f"{base_url}/oauth/token", json=body)
    assert response.status_code == 200
    validate_httpx_response(response)
    token = response.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 5400
    assert "refresh_token" not in token
    assert isinstance(token["created_at"], int)

    form = httpx.post(f"{base_url}/oauth/token", data=body)
    assert form.status_code == 200
    assert form.json()["access_token"] != token["access_token"]
    multipart = httpx.post(f"{base_url}/oauth/token", files={k: (None, v) for k, v in body.items()})
    assert multipart.status_code == 200

    me = httpx.get(f"{base_url}/rest/v1.0/me", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"]
    info = httpx.get(f"{base_url}/oauth/token/info", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert info.json()["application"]["uid"] == "sandbox-client"

    bad = httpx.post(f"{base_url}/oauth/token", json=body | {"client_secret": "nope"})
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_client"


def test_authorization_code_flow_with_rotating_refresh_tokens(base_url: str, control: httpx.Client) -> None:
    ids = seed(control)
    client = control.post("/clients", json={"client_id": "web-app", "company_ids": [ids["company_id"]]}).json()
    control.post("/users", json={"login": "pat@app.test", "company_ids": [ids["company_id"]]})
    authorize = httpx.get(
        f"{base_url}/oauth/authorize",
        params={
            "client_id": "web-app",
            "redirect_uri": "http://app.test/cb",
            "response_type": "code",
            "state": "xyz",
            "login_hint": "pat@app.test",
        },
    )
    assert authorize.status_code == 302
    location = urlsplit(authorize.headers["location"])
    query = parse_qs(location.query)
    assert location.netloc == "app.test"
    assert query["state"] == ["xyz"]
    creds = {"client_id": "web-app", "client_secret": client["client_secret"]}
    first = httpx.post(
        f"{base_url}/oauth/token",
        json=creds
        | {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": "http://app.test/cb",
        },
    )
    assert first.status_code == 200, first.text
    validate_httpx_response(first)
    pair1 = first.json()
    assert pair1["refresh_token"]
    # Codes are single-use.
    again = httpx.post(
        f"{base_url}/oauth/token",
        json=creds
        | {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": "http://app.test/cb",
        },
    )
    assert again.status_code == 400

    second = httpx.post(
        f"{base_url}/oauth/token",
        json=creds | {"grant_type": "refresh_token", "refresh_token": pair1["refresh_token"]},
    )
    assert second.status_code == 200
    pair2 = second.json()
    assert pair2["refresh_token"] != pair1["refresh_token"]
    reuse = httpx.post(
        f"{base_url}/oauth/token",
        json=creds | {"grant_type": "refresh_token", "refresh_token": pair1["refresh_token"]},
    )
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"

    projects = httpx.get(
        f"{base_url}/rest/v1.0/projects",
        params={"company_id": ids["company_id"]},
        headers={
            "Authorization": f"Bearer {pair2['access_token']}",
            "Procore-Company-Id": str(ids["company_id"]),
        },
    )
    assert projects.status_code == 200
    assert len(projects.json()) == 2


def test_expired_and_revoked_tokens_get_401(base_url: str, control: httpx.Client) -> None:
    control.put("/settings", json={"token_lifetime_s": 1})
    api = Procore(base_url, None)
    assert api.get("/rest/v1.0/me").status_code == 200
    time.sleep(1.1)
    expired = api.get("/rest/v1.0/me")
    assert expired.status_code == 401
    assert expired.json()["message"] == "Access token expired"

    control.put("/settings", json={"token_lifetime_s": 5400})
    api = Procore(base_url, None)
    control.post("/tokens/expire")
    assert api.get("/rest/v1.0/me").status_code == 401

    api = Procore(base_url, None)
    assert httpx.post(f"{base_url}/oauth/revoke", json={"token": api.token}).status_code == 200
    assert api.get("/rest/v1.0/companies").status_code == 401
    unknown = httpx.get(f"{base_url}/rest/v1.0/me", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401
    assert "message" in unknown.json()


# ---------------------------------------------------------------- company header


def test_company_header_required_and_app_must_be_installed(
    base_url: str, control: httpx.Client, world: dict[str, Any]
) -> None:
    api: Procore = world["api"]
    cid = world["company_id"]
    missing = api.get("/rest/v1.0/projects", params={"company_id": cid}, company=False, validate=False)
    assert missing.status_code == 400
    assert missing.json()["message"] == "Missing Procore-Company-Id header!"
    with pytest.raises(SpecValidationError, match="Procore-Company-Id"):
        validate_httpx_request(missing.request)
    assert api.get("/rest/v1.0/companies", company=False).status_code == 200
    assert [c["id"] for c in api.get("/rest/v1.0/companies", company=False).json()] == [cid]

    other = seed(control, name="Not Installed", installed_clients=[])["company_id"]
    forbidden = api.get("/rest/v1.0/projects", params={"company_id": other}, headers={"Procore-Company-Id": str(other)})
    assert forbidden.status_code == 403
    assert forbidden.json()["message"] == "App is not connected to this company"
    nonexistent = api.get("/rest/v1.0/vendors", params={"company_id": 1}, headers={"Procore-Company-Id": "1"})
    assert nonexistent.status_code == 403


# ---------------------------------------------------------------- reference data and pagination


def test_reference_endpoints_match_spec(world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    cid = world["company_id"]
    tower = world["projects"][0]
    assert len(api.get("/rest/v1.0/projects", params={"company_id": cid}).json()) == 2
    assert len(api.get(f"/rest/v1.0/companies/{cid}/projects").json()) == 2
    vendors = api.get("/rest/v1.0/vendors", params={"company_id": cid}).json()
    assert {v["name"] for v in vendors} == {"Concrete Crew Inc", "Steel Erectors"}
    employees = api.get(f"/rest/v1.0/companies/{cid}/people", params={"filters[is_employee]": "true"}).json()
    assert {p["employee_id"] for p in employees} == {"E1", "E2"}
    assert len(api.get(f"/rest/v1.0/companies/{cid}/work_classifications").json()) == 2
    project_wcs = api.get(f"/rest/v1.0/projects/{tower['id']}/work_classifications").json()
    assert {w["name"] for w in project_wcs} == {"Tower Crane Operator", "Carpenter"}
    codes = api.get("/rest/v1.0/cost_codes", params={"project_id": tower["id"]}).json()
    assert [c["full_code"] for c in codes] == ["03-300", "05-100"]
    assert {t["base_type"] for t in codes[0]["line_item_types"]} == {"labor", "material"}
    company_types = api.get(f"/rest/v1.0/companies/{cid}/timecard_time_types")
    assert "Link" not in company_types.headers
    assert {t["time_type"] for t in company_types.json()} == {"Regular Time", "Overtime", "Double Time"}
    project_types = api.get("/rest/v1.0/timecard_time_types", params={"project_id": tower["id"]}).json()
    assert {t["abbreviated_time_type"] for t in project_types} == {"REG", "OT", "DT"}
    assert api.get("/rest/v1.0/cost_codes", params={"project_id": 42}).status_code == 404


def test_pagination_headers_across_pages(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    cid = world["company_id"]
    control.post("/companies", json={"id": cid, "generate": {"people": 247}})
    path = f"/rest/v1.0/companies/{cid}/people"
    first = api.get(path, params={"per_page": 100})
    assert first.headers["Total"] == "250"
    assert first.headers["Per-Page"] == "100"
    assert 'rel="next"' in first.headers["Link"]
    assert 'rel="prev"' not in first.headers["Link"]
    assert 'page=3&per_page=100>; rel="last"' in first.headers["Link"]
    last = api.get(path, params={"per_page": 100, "page": 3})
    assert len(last.json()) == 50
    assert 'rel="next"' not in last.headers["Link"]
    assert 'rel="prev"' in last.headers["Link"]

    seen: list[int] = []
    url: str | None = f"{path}?per_page=60"
    while url:
        page = api.get(url)
        seen += [p["id"] for p in page.json()]
        links = httpx.Response(200, headers={"Link": page.headers["Link"]}).links
        url = links.get("next", {}).get("url")
    assert len(seen) == len(set(seen)) == 250

    control.put("/settings", json={"per_page_max": 40})
    capped = api.get(path, params={"per_page": 2000})
    assert capped.headers["Per-Page"] == "40"
    assert len(capped.json()) == 40


# ---------------------------------------------------------------- manpower logs


def test_manpower_log_lifecycle(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    pid = world["projects"][0]["id"]
    code = world["projects"][0]["cost_codes"][0]["id"]
    vendor = world["vendors"][0]
    path = f"/rest/v1.0/projects/{pid}/manpower_logs"
    created = api.post(
        path,
        {
            "manpower_log": {
                "num_workers": 4,
                "num_hours": "7.5",
                "contact_id": vendor,
                "cost_code_id": code,
                "notes": "crew A [mc:1]",
            }
        },
    )
    assert created.status_code == 201, created.text
    log = created.json()
    assert log["date"] == TODAY.isoformat()
    assert log["status"] == "approved"
    assert log["num_hours"] == "7.5"
    assert log["man_hours"] == "30.0"
    assert log["vendor"]["id"] == vendor
    assert log["cost_code"] == {"id": code, "name": "Concrete"}

    assert api.get(f"{path}/{log['id']}").json()["notes"] == "crew A [mc:1]"
    patched = api.patch(f"{path}/{log['id']}", {"manpower_log": {"num_workers": 5}})
    assert patched.status_code == 200
    assert patched.json()["num_workers"] == 5
    assert patched.json()["updated_at"] > log["updated_at"]

    pending = api.patch(f"{path}/{log['id']}", {"manpower_log": {"status": "pending"}}).json()
    assert pending["status"] == "pending"
    assert api.get(path).json() == []
    assert [m["id"] for m in api.get(path, params={"filters[status]": "all"}).json()] == [log["id"]]

    deleted = api.delete(f"{path}/{log['id']}")
    assert deleted.status_code == 200
    assert deleted.content == b""
    assert api.get(f"{path}/{log['id']}").status_code == 404
    stored = control.get("/records/manpower_logs", params={"project_id": pid}).json()
    assert stored[0]["deleted"] is True
    assert stored[0]["created_by_client_id"] == "sandbox-client"


def test_manpower_validation_errors(world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    pid = world["projects"][0]["id"]
    other_code = world["projects"][1]["cost_codes"][0]["id"]
    path = f"/rest/v1.0/projects/{pid}/manpower_logs"
    bad_vendor = api.post(path, {"manpower_log": {"num_workers": 1, "contact_id": 999}})
    assert bad_vendor.status_code == 422
    assert "contact_id" in bad_vendor.json()["errors"]
    validate_httpx_response(bad_vendor)
    bad_code = api.post(path, {"manpower_log": {"num_workers": 1, "cost_code_id": other_code}})
    assert bad_code.status_code == 422
    assert "cost code" in bad_code.json()["message"]
    assert api.post("/rest/v1.0/projects/123/manpower_logs", {"manpower_log": {"num_workers": 1}}).status_code == 404
    missing = api.post(path, {"num_workers": 1}, validate=False)
    assert missing.status_code == 400
    assert "manpower_log" in missing.json()["message"]


def test_daily_logs_default_to_today(world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    pid = world["projects"][0]["id"]
    path = f"/rest/v1.0/projects/{pid}/manpower_logs"
    old = api.post(path, {"manpower_log": {"date": YESTERDAY, "num_workers": 1, "num_hours": "8"}}).json()
    new = api.post(path, {"manpower_log": {"num_workers": 2, "num_hours": "8"}}).json()
    assert [m["id"] for m in api.get(path).json()] == [new["id"]]
    assert [m["id"] for m in api.get(path, params={"log_date": YESTERDAY}).json()] == [old["id"]]
    both = api.get(path, params={"start_date": YESTERDAY, "end_date": TODAY.isoformat()}).json()
    assert [m["id"] for m in both] == [old["id"], new["id"]]
    assert api.get(path, params={"log_date": "yesterday"}, validate=False).status_code == 400


# ---------------------------------------------------------------- quantity logs


def test_quantity_log_lifecycle_and_integer_rule(world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    pid = world["projects"][0]["id"]
    code = world["projects"][0]["cost_codes"][1]["id"]
    path = f"/rest/v1.0/projects/{pid}/quantity_logs"
    created = api.post(
        path,
        {
            "quantity_log": {
                "quantity": 12,
                "unit": "CY",
                "cost_code_id": code,
                "description": "pour [mc:q1]",
                "date": YESTERDAY,
            }
        },
    )
    assert created.status_code == 201
    log = created.json()
    assert log["quantity"] == 12
    assert log["unit"] == "CY"
    assert log["cost_code"]["name"] == "Steel"
    assert api.get(path).json() == []
    assert [q["id"] for q in api.get(path, params={"log_date": YESTERDAY}).json()] == [log["id"]]

    fractional_body = {"quantity_log": {"quantity": 2.5, "unit": "CY"}}
    with pytest.raises(SpecValidationError, match="quantity"):
        validate_request(
            "POST",
            f"{api.http.base_url}{path}",
            {"Authorization": "Bearer x", "Procore-Company-Id": "1"},
            fractional_body,
        )
    fractional = api.post(path, fractional_body, validate=False)
    assert fractional.status_code == 422
    assert fractional.json()["errors"] == {"quantity": ["must be an integer, got 2.5"]}
    validate_httpx_response(fractional)

    patched = api.patch(f"{path}/{log['id']}", {"quantity_log": {"quantity": 13}}).json()
    assert patched["quantity"] == 13
    assert patched["updated_at"] > log["updated_at"]
    assert api.delete(f"{path}/{log['id']}").status_code == 200
    assert api.get(f"{path}/{log['id']}").status_code == 404


# ---------------------------------------------------------------- timecard entries


def test_project_timecard_entries(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    pid = world["projects"][0]["id"]
    code = world["projects"][0]["cost_codes"][0]
    labor = next(t["id"] for t in code["line_item_types"] if t["base_type"] == "labor")
    ann, bob = world["people"][0], world["people"][1]
    reg = world["timecard_time_types"][0]["id"]
    path = f"/rest/v1.0/projects/{pid}/timecard_entries"
    body = {
        "timecard_entry": {
            "hours": "8",
            "party_id": ann,
            "timecard_time_type_id": reg,
            "cost_code_id": code["id"],
            "line_item_type_id": labor,
            "origin_id": 1001,
            "origin_data": "mc:tc:1",
        }
    }
    created = api.post(path, body)
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["hours"] == "8.0"
    assert entry["party"]["id"] == ann
    assert entry["timecard_time_type"]["abbreviated_time_type"] == "REG"

    duplicate = api.post(path, body | {"timecard_entry": body["timecard_entry"] | {"party_id": bob}})
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"] == {"origin_id": ["has already been taken"]}
    control.put("/settings", json={"duplicate_origin_status": 409})
    assert api.post(path, body).status_code == 409

    timed = api.post(
        path,
        {"timecard_entry": {"party_id": bob, "time_in": "07:00", "time_out": "15:30", "lunch_time": "30"}},
    ).json()
    assert timed["hours"] == "8.0"
    assert timed["lunch_time"] == 30
    assert api.post(path, {"timecard_entry": {"hours": "8"}}, validate=False).status_code == 422
    bad_type = api.post(path, {"timecard_entry": {"hours": "8", "party_id": ann, "timecard_time_type_id": 7}})
    assert bad_type.status_code == 422
    assert "timecard_time_type_id" in bad_type.json()["errors"]
    bad_lit = api.post(path, {"timecard_entry": {"hours": "8", "party_id": ann, "line_item_type_id": labor}})
    assert bad_lit.status_code == 422

    patched = api.patch(f"{path}/{entry['id']}", {"timecard_entry": {"hours": "9.25"}}).json()
    assert patched["hours"] == "9.25"
    assert patched["updated_at"] > entry["updated_at"]
    assert sorted(e["id"] for e in api.get(path).json()) == sorted([entry["id"], timed["id"]])
    assert api.delete(f"{path}/{entry['id']}").status_code == 200
    # The origin_id of a deleted entry can be reused.
    assert api.post(path, body).status_code == 201


def test_company_timecard_entries_incremental_sync(world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    cid = world["company_id"]
    pid = world["projects"][1]["id"]
    path = f"/rest/v1.0/companies/{cid}/timecard_entries"
    before = api.post(
        path,
        {
            "project_id": pid,
            "timecard_entry": {"date": YESTERDAY, "hours": "4", "party_id": world["people"][0]},
        },
    )
    assert before.status_code == 201, before.text
    first = before.json()
    assert first["project"]["id"] == pid
    assert first["lunch_time"] is None
    no_date = api.post(
        path,
        {"project_id": pid, "timecard_entry": {"hours": "4", "party_id": world["people"][0]}},
        validate=False,
    )
    assert no_date.status_code == 422
    second = api.post(
        path,
        {
            "project_id": pid,
            "timecard_entry": {"date": YESTERDAY, "hours": "2", "party_id": world["people"][1]},
        },
    ).json()
    since = f"{second['updated_at']}...2999-01-01T00:00:00Z"
    changed = api.get(path, params={"filters[updated_at]": since}).json()
    assert [e["id"] for e in changed] == [second["id"]]
    assert len(api.get(path).json()) == 2

    deleted = api.delete(f"{path}/{first['id']}")
    assert deleted.status_code == 200
    assert deleted.json()["deleted_at"] is not None
    gone = api.get(path, params={"filters[deleted_at]": "2000-01-01...2999-01-01"}).json()
    assert [e["id"] for e in gone] == [first["id"]]
    assert [e["id"] for e in api.get(path).json()] == [second["id"]]
    project_view = api.get(f"/rest/v1.0/projects/{pid}/timecard_entries", params={"log_date": YESTERDAY}).json()
    assert [e["id"] for e in project_view] == [second["id"]]
    patched = api.patch(
        f"{path}/{second['id']}", {"project_id": pid, "timecard_entry": {"date": YESTERDAY, "hours": "3"}}
    )
    assert patched.status_code == 200
    assert patched.json()["hours"] == "3.0"


def test_updated_at_strictly_increasing_under_rapid_writes(world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    path = f"/rest/v1.0/projects/{world['projects'][0]['id']}/manpower_logs"
    log = api.post(path, {"manpower_log": {"num_workers": 1}}).json()
    stamps = [log["updated_at"]]
    ids = [log["id"]]
    for n in range(2, 12):
        stamps.append(api.patch(f"{path}/{log['id']}", {"manpower_log": {"num_workers": n}}).json()["updated_at"])
        ids.append(api.post(path, {"manpower_log": {"num_workers": n}}).json()["id"])
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
    assert ids == sorted(ids)
    assert all(i > 2**40 for i in ids)


# ---------------------------------------------------------------- rate limits


def test_rate_limits_per_company_with_headers(control: httpx.Client, base_url: str, world: dict[str, Any]) -> None:
    other = seed(control, name="Other Co")["company_id"]
    control.put("/settings", json={"rate_limit_spike": 3, "rate_limit_hourly": 50})
    api: Procore = world["api"]
    cid = world["company_id"]
    remaining = []
    for _ in range(3):
        ok = api.get("/rest/v1.0/vendors", params={"company_id": cid})
        assert ok.status_code == 200
        assert ok.headers["X-Rate-Limit-Limit"] == "3"
        assert int(ok.headers["X-Rate-Limit-Reset"]) >= int(time.time())
        remaining.append(int(ok.headers["X-Rate-Limit-Remaining"]))
    assert remaining == [2, 1, 0]
    limited = api.get("/rest/v1.0/vendors", params={"company_id": cid})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert "surpassed the max number of requests" in limited.json()["message"]

    other_api = Procore(base_url, other)
    assert other_api.get("/rest/v1.0/vendors", params={"company_id": other}).status_code == 200

    # Hourly window reported once it is closer to exhaustion than the spike window; scaled windows reset fast.
    control.put("/settings", json={"rate_limit_spike": 100, "rate_limit_hourly": 2, "rate_limit_time_scale": 0.0005})
    assert api.get("/rest/v1.0/me", company=False).headers["X-Rate-Limit-Limit"] == "2"
    assert api.get("/rest/v1.0/me", company=False).status_code == 200
    assert api.get("/rest/v1.0/me", company=False).status_code == 429
    time.sleep(1.9)  # hourly window = 3600 s * 0.0005 = 1.8 s
    assert api.get("/rest/v1.0/me", company=False).status_code == 200


# ---------------------------------------------------------------- faults


def test_status_latency_and_timeout_faults(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    cid = world["company_id"]
    control.post("/faults", json={"path": "/rest/v1.0/vendors", "status": 503, "retry_after": 7, "times": 1})
    unavailable = api.get("/rest/v1.0/vendors", params={"company_id": cid})
    assert unavailable.status_code == 503
    assert unavailable.headers["Retry-After"] == "7"
    assert api.get("/rest/v1.0/vendors", params={"company_id": cid}).status_code == 200

    control.post("/faults", json={"path": "/rest/v1.0/vendors", "kind": "latency", "latency_ms": 300})
    started = time.monotonic()
    assert api.get("/rest/v1.0/vendors", params={"company_id": cid}).status_code == 200
    assert time.monotonic() - started >= 0.3

    control.post("/faults", json={"path": "/rest/*/vendors", "kind": "timeout", "timeout_s": 1.5})
    with pytest.raises(httpx.ReadTimeout):
        api.get("/rest/v1.0/vendors", params={"company_id": cid}, timeout=0.3)

    control.post("/faults", json={"path": "*", "status": 500, "probability": 0.0, "times": None})
    assert api.get("/rest/v1.0/vendors", params={"company_id": cid}).status_code == 200
    control.delete("/faults")


def test_fail_after_commit_creates_the_record(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    pid = world["projects"][0]["id"]
    path = f"/rest/v1.0/projects/{pid}/manpower_logs"
    control.post("/faults", json={"path": path, "method": "POST", "kind": "fail_after_commit", "status": 500})
    failed = api.post(path, {"manpower_log": {"num_workers": 3, "notes": "[mc:a]"}})
    assert failed.status_code == 500
    control.post("/faults", json={"path": path, "method": "POST", "kind": "fail_after_commit", "after_commit": "drop"})
    with pytest.raises(httpx.RemoteProtocolError):
        api.post(path, {"manpower_log": {"num_workers": 4, "notes": "[mc:b]"}})
    # Both writes happened: a careful publisher must re-list before retrying.
    assert sorted(m["notes"] for m in api.get(path).json()) == ["[mc:a]", "[mc:b]"]
    log = control.get("/requests", params={"path": "manpower_logs", "method": "POST"}).json()
    assert [(e["status"], e["outcome"], e["committed_status"]) for e in log] == [
        (500, "fault", 201),
        (None, "dropped", 201),
    ]


# ---------------------------------------------------------------- control API edits, request log


def test_control_edits_bump_updated_at_and_delete(control: httpx.Client, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    pid = world["projects"][0]["id"]
    path = f"/rest/v1.0/projects/{pid}/quantity_logs"
    log = api.post(path, {"quantity_log": {"quantity": 5, "unit": "EA"}}).json()
    edited = control.patch(f"/records/quantity_logs/{log['id']}", json={"quantity": 6})
    assert edited.status_code == 200
    assert edited.json()["created_by_client_id"] == "sandbox-client"
    current = api.get(f"{path}/{log['id']}").json()
    assert current["quantity"] == 6
    assert current["updated_at"] > log["updated_at"]
    assert control.patch(f"/records/quantity_logs/{log['id']}", json={"quantity": 1.5}).status_code == 422
    assert control.delete(f"/records/quantity_logs/{log['id']}").json()["deleted"] is True
    assert api.get(f"{path}/{log['id']}").status_code == 404
    assert control.patch("/records/nonsense/1", json={}).status_code == 404


def test_request_log_filters_and_clear(control: httpx.Client, base_url: str, world: dict[str, Any]) -> None:
    api: Procore = world["api"]
    cid = world["company_id"]
    control.delete("/requests")
    api.get("/rest/v1.0/vendors", params={"company_id": cid})
    api.post(
        f"/rest/v1.0/projects/{world['projects'][0]['id']}/manpower_logs",
        {"manpower_log": {"num_workers": 1}},
    )
    httpx.post(
        f"{base_url}/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
        },
    )
    entries = control.get("/requests", params={"company_id": cid}).json()
    assert [e["method"] for e in entries] == ["GET", "POST"]
    post = entries[1]
    assert post["headers"]["procore-company-id"] == str(cid)
    assert post["headers"]["authorization"] is True
    assert post["body"] == {"manpower_log": {"num_workers": 1}}
    assert post["status"] == 201
    assert post["client_id"] == "sandbox-client"
    oauth = control.get("/requests", params={"path": "/oauth/token"}).json()
    assert oauth[0]["body"]["client_secret"] == "***"
    control.delete("/requests")
    assert control.get("/requests").json() == []


# ---------------------------------------------------------------- webhooks


class _Receiver(BaseHTTPRequestHandler):
    events: list[tuple[dict[str, str], dict[str, Any]]] = []
    fail_first: int = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _Receiver.fail_first > 0:
            _Receiver.fail_first -= 1
            self.send_response(500)
        else:
            _Receiver.events.append((dict(self.headers), body))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.events = []
    _Receiver.fail_first = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/procore"
    server.shutdown()
    server.server_close()


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_webhook_hooks_triggers_and_delivery(control: httpx.Client, world: dict[str, Any], receiver: str) -> None:
    api: Procore = world["api"]
    cid = world["company_id"]
    pid = world["projects"][0]["id"]
    control.put("/settings", json={"webhook_retry_base_s": 0.05})
    hook = api.post(
        "/rest/v1.0/webhooks/hooks",
        {
            "company_id": cid,
            "hook": {
                "api_version": "v2",
                "namespace": "mobiclocks",
                "destination_url": receiver,
                "destination_headers": {"Authorization": "Bearer hook-secret"},
            },
        },
    )
    assert hook.status_code == 201, hook.text
    hook_id = hook.json()["id"]
    for event_type in ("create", "update"):
        trigger = api.post(
            f"/rest/v1.0/webhooks/hooks/{hook_id}/triggers",
            {
                "company_id": cid,
                "api_version": "v2",
                "trigger": {"resource_name": "Manpower Logs", "event_type": event_type},
            },
        )
        assert trigger.status_code == 201, trigger.text
    assert len(api.get(f"/rest/v1.0/webhooks/hooks/{hook_id}/triggers", params={"company_id": cid}).json()) == 2
    assert [h["id"] for h in api.get("/rest/v1.0/webhooks/hooks", params={"company_id": cid}).json()] == [hook_id]

    _Receiver.fail_first = 1
    log = api.post(f"/rest/v1.0/projects/{pid}/manpower_logs", {"manpower_log": {"num_workers": 2}}).json()
    _wait_for(lambda: len(_Receiver.events) == 1)
    headers, event = _Receiver.events[0]
    assert headers["Authorization"] == "Bearer hook-secret"
    assert event["resource_name"] == "Manpower Logs"
    assert event["event_type"] == "create"
    assert event["resource_id"] == log["id"]
    assert event["company_id"] == cid
    assert event["project_id"] == pid
    assert event["metadata"]["source_application_id"] == "sandbox-client"
    assert len(event["ulid"]) == 26

    control.patch(f"/records/manpower_logs/{log['id']}", json={"num_workers": 3})
    _wait_for(lambda: len(_Receiver.events) == 2)
    update = _Receiver.events[1][1]
    assert update["event_type"] == "update"
    assert update["metadata"]["source_application_id"] is None
    api.delete(f"/rest/v1.0/projects/{pid}/manpower_logs/{log['id']}")  # no delete trigger: nothing sent

    deliveries = control.get("/webhook-deliveries").json()
    assert [d["status"] for d in deliveries] == ["delivered", "delivered"]
    assert [a.get("status_code") for a in deliveries[0]["attempts"]] == [500, 200]

    assert api.delete(f"/rest/v1.0/webhooks/hooks/{hook_id}", params={"company_id": cid}).status_code == 200
    assert api.get("/rest/v1.0/webhooks/hooks", params={"company_id": cid}).json() == []


# ---------------------------------------------------------------- CLI


def test_cli_prints_ready_line() -> None:
    with FreePort() as port:
        pass
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.procore", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == f"Procore sandbox listening on http://127.0.0.1:{port}"
        assert httpx.post(f"http://127.0.0.1:{port}/_sandbox/reset").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class FreePort:
    """Pick a free port (closed again before use)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port: int = self.sock.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
