"""The sandbox models what binding by proof needs: Procore users and their companies, who consents at the
authorize endpoint (login_hint or a sign-in page), codes bound to that user and to the PKCE challenge (RFC 7636
S256), a user's token reaching only the user's companies, a customer's service account only its company."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.procore.oauth import Pkce

pytestmark = pytest.mark.integration

APP = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}
REDIRECT = "http://app.test/callback"


@pytest.fixture
def procore(procore_sandbox_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=procore_sandbox_url, timeout=10) as client:
        yield client


def company(procore: httpx.Client, name: str) -> int:
    return int(procore.post("/_sandbox/companies", json={"name": name}).json()["company_id"])


def authorize(procore: httpx.Client, **params: str) -> httpx.Response:
    query = {"response_type": "code", "client_id": "sandbox-client", "redirect_uri": REDIRECT, **params}
    return procore.get("/oauth/authorize", params=query, follow_redirects=False)


def code_of(answer: httpx.Response) -> str:
    assert answer.status_code in (302, 303), answer.text
    return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]


def exchange(procore: httpx.Client, code: str, **extra: str) -> httpx.Response:
    body = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **APP, **extra}
    return procore.post("/oauth/token", json=body)


def test_a_users_token_reaches_only_the_users_companies(procore: httpx.Client) -> None:
    own, other = company(procore, "Own Co"), company(procore, "Other Co")
    login = f"u-{secrets.token_hex(4)}@sandbox.example"
    user = procore.post("/_sandbox/users", json={"login": login, "name": "Una", "company_ids": [own]})
    assert user.status_code == 201
    assert user.json()["company_ids"] == [own]
    token = exchange(procore, code_of(authorize(procore, login_hint=login, state="s1"))).json()
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert [c["id"] for c in procore.get("/rest/v1.0/companies", headers=bearer).json()] == [own]
    assert procore.get("/rest/v1.0/me", headers=bearer).json()["login"] == login
    listed = procore.get(
        "/rest/v1.0/projects", params={"company_id": own}, headers={**bearer, "Procore-Company-Id": str(own)}
    )
    assert listed.status_code == 200
    elsewhere = procore.get(
        "/rest/v1.0/projects", params={"company_id": other}, headers={**bearer, "Procore-Company-Id": str(other)}
    )
    assert elsewhere.status_code == 403
    # A refreshed token is still the user's.
    refreshed = procore.post(
        "/oauth/token", json={"grant_type": "refresh_token", "refresh_token": token["refresh_token"], **APP}
    ).json()
    again = procore.get("/rest/v1.0/companies", headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert [c["id"] for c in again.json()] == [own]


def test_a_customer_service_account_reaches_only_its_company(procore: httpx.Client) -> None:
    own, other = company(procore, "SA Co"), company(procore, "Not Mine")
    account = procore.post("/_sandbox/clients", json={"company_ids": [own]}).json()
    token = procore.post(
        "/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
        },
    ).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert [c["id"] for c in procore.get("/rest/v1.0/companies", headers=bearer).json()] == [own]
    refused = procore.get(
        "/rest/v1.0/vendors", params={"company_id": other}, headers={**bearer, "Procore-Company-Id": str(other)}
    )
    assert refused.status_code == 403


def test_pkce_s256_the_verifier_must_match_the_challenge(procore: httpx.Client) -> None:
    own = company(procore, "PKCE Co")
    login = f"p-{secrets.token_hex(4)}@sandbox.example"
    procore.post("/_sandbox/users", json={"login": login, "company_ids": [own]})
    pkce = Pkce.new()
    challenge = {"login_hint": login, "code_challenge": pkce.challenge, "code_challenge_method": "S256"}

    wrong = exchange(procore, code_of(authorize(procore, **challenge)), code_verifier=Pkce.new().verifier)
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert "code_verifier" in wrong.json()["error_description"]
    missing = exchange(procore, code_of(authorize(procore, **challenge)))
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_grant"
    code = code_of(authorize(procore, **challenge))
    assert exchange(procore, code, code_verifier=pkce.verifier).status_code == 200
    assert exchange(procore, code, code_verifier=pkce.verifier).status_code == 400, "a code works once"
    bad_method = authorize(procore, **{**challenge, "code_challenge_method": "S512"})
    assert bad_method.status_code == 400
    assert bad_method.json()["error"] == "invalid_request"


def test_without_a_login_hint_the_user_signs_in_on_a_page(procore: httpx.Client) -> None:
    own = company(procore, "Page Co")
    login = f"s-{secrets.token_hex(4)}@sandbox.example"
    procore.post("/_sandbox/users", json={"login": login, "name": "Sam Page", "company_ids": [own]})
    page = authorize(procore, state="xyz")
    assert page.status_code == 200
    assert "Continue as Sam Page" in page.text
    assert "Page Co" in page.text
    form = {"response_type": "code", "client_id": "sandbox-client", "redirect_uri": REDIRECT, "state": "xyz"}
    allowed = procore.post("/oauth/authorize", data={**form, "login": login}, follow_redirects=False)
    assert allowed.status_code == 303
    assert parse_qs(urlsplit(allowed.headers["location"]).query)["state"] == ["xyz"]
    token = exchange(procore, code_of(allowed)).json()["access_token"]
    listed = procore.get("/rest/v1.0/companies", headers={"Authorization": f"Bearer {token}"}).json()
    assert [c["id"] for c in listed] == [own]
    denied = procore.post("/oauth/authorize", data={**form, "deny": "1"}, follow_redirects=False)
    assert parse_qs(urlsplit(denied.headers["location"]).query)["error"] == ["access_denied"]
    unknown = authorize(procore, login_hint="nobody@sandbox.example")
    assert unknown.status_code == 200
    assert "No user" in unknown.text
