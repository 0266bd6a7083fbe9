"""The sandbox fault the chaos suite added: Procore withdrawing every access token at once."""

from __future__ import annotations

import httpx

from tests.sandbox_fixtures import run_sandbox

CLIENT = {"client_id": "sandbox-client", "client_secret": "sandbox-secret"}


def test_revoking_all_tokens_refuses_them_and_keeps_refresh_tokens_unless_asked() -> None:
    with run_sandbox() as base, httpx.Client(base_url=base) as http:
        company = http.post("/_sandbox/companies", json={"name": "Co"}).json()["company_id"]
        client = http.post("/_sandbox/clients", json={"client_id": "app", "company_ids": [company]}).json()
        creds = {"client_id": "app", "client_secret": client["client_secret"]}
        app = http.post("/oauth/token", json={"grant_type": "client_credentials", **creds}).json()["access_token"]
        own = http.post("/oauth/token", json={"grant_type": "client_credentials", **CLIENT}).json()["access_token"]

        def status(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}", "Procore-Company-Id": str(company)}
            return http.get(f"/rest/v1.0/companies/{company}/timecard_time_types", headers=headers).status_code

        assert status(app) == 200
        assert http.post("/_sandbox/tokens/revoke", json={"client_id": "app"}).json() == {"revoked": 1}
        assert status(app) == 401
        assert status(own) == 200  # another client's token is untouched
        assert http.post("/_sandbox/tokens/revoke", json={}).json()["revoked"] == 1
        assert status(own) == 401


def test_refresh_tokens_survive_a_revocation_unless_it_includes_them() -> None:
    with run_sandbox() as base, httpx.Client(base_url=base) as http:
        company = http.post("/_sandbox/companies", json={"name": "Revoked Co"}).json()["company_id"]
        http.post("/_sandbox/users", json={"login": "pm@revoked.test", "company_ids": [company]})
        authorize = http.get(
            "/oauth/authorize",
            params={
                "client_id": "sandbox-client",
                "redirect_uri": "http://x/cb",
                "response_type": "code",
                "login_hint": "pm@revoked.test",  # the Procore user who consents
            },
            follow_redirects=False,
        )
        code = httpx.URL(authorize.headers["location"]).params["code"]
        grant = {**CLIENT, "redirect_uri": "http://x/cb"}
        tokens = http.post("/oauth/token", json={"grant_type": "authorization_code", "code": code, **grant}).json()

        def refresh() -> httpx.Response:
            body = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **CLIENT}
            return http.post("/oauth/token", json=body)

        http.post("/_sandbox/tokens/revoke", json={})
        answer = refresh()
        assert answer.status_code == 200  # access withdrawn, the connection can still recover
        tokens = answer.json()
        http.post("/_sandbox/tokens/revoke", json={"refresh_tokens": True})
        assert refresh().status_code == 400
