"""shared.metrics: endpoint templates, the outgoing and incoming HTTP instrumentation, the scrape hooks."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from shared import metrics
from tests.support.scrape import parse, total


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/rest/v1.0/projects/42/manpower_logs", "/rest/v1.0/projects/{id}/manpower_logs"),
        ("/rest/v1.0/projects/42/manpower_logs/7", "/rest/v1.0/projects/{id}/manpower_logs/{id}"),
        ("/rest/v1.1/companies", "/rest/v1.1/companies"),
        (f"/internal/tokens/{uuid.UUID(int=5)}", "/internal/tokens/{id}"),
        ("/oauth/token", "/oauth/token"),
        ("/", "/"),
    ],
)
def test_url_template_replaces_ids_so_paths_stay_few(path: str, expected: str) -> None:
    assert metrics.url_template(path) == expected


async def scraped() -> dict:
    return parse((await metrics.exposition()).decode())


async def test_procore_calls_are_counted_by_endpoint_and_status_with_the_rate_limit_left_per_company() -> None:
    host = f"procore-{uuid.uuid4().hex[:8]}.test"

    def procore(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/manpower_logs") and request.method == "POST":
            return httpx.Response(
                201, json={"id": 1}, headers={"X-Rate-Limit-Limit": "3600", "X-Rate-Limit-Remaining": "3599"}
            )
        return httpx.Response(429, headers={"Retry-After": "1", "X-Rate-Limit-Remaining": "0"})

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(procore), base_url=f"https://{host}", event_hooks=metrics.http_client_hooks()
    ) as http:
        company = {"Procore-Company-Id": "9917"}
        assert (await http.post("/rest/v1.0/projects/5/manpower_logs", json={}, headers=company)).status_code == 201
        assert (await http.post("/rest/v1.0/projects/6/manpower_logs", json={}, headers=company)).status_code == 201
        assert (await http.get("/rest/v1.0/projects/6/manpower_logs", headers=company)).status_code == 429

    series = await scraped()
    count = "http_client_request_duration_seconds_count"
    template = "/rest/v1.0/projects/{id}/manpower_logs"
    created = dict(server_address=host, url_template=template, http_request_method="POST")
    assert total(series, count, **created, http_response_status_code="201") == 2
    assert total(series, count, server_address=host, url_template=template, http_response_status_code="429") == 1
    # the 429 came last and said 0 left (its limit header was absent: the last known limit stays)
    assert total(series, "procore_rate_limit_remaining", procore_company_id="9917") == 0
    assert total(series, "procore_rate_limit_limit", procore_company_id="9917") == 3600


async def test_gateway_requests_are_counted_by_route_template_never_by_raw_path() -> None:
    app = FastAPI()

    @app.get("/api/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.post("/api/boom-{marker}")
    async def boom(marker: str) -> None:
        raise RuntimeError("a bug")

    app.add_middleware(metrics.HttpServerMetrics)
    marker = uuid.uuid4().hex[:8]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        for n in range(3):
            assert (await http.get(f"/api/things/{marker}-{n}")).status_code == 200
        assert (await http.get(f"/nowhere/{marker}")).status_code == 404
        assert (await http.post(f"/api/boom-{marker}")).status_code == 500

    series = await scraped()
    count = "http_server_request_duration_seconds_count"
    assert total(series, count, http_route="/api/things/{thing_id}", http_response_status_code="200") >= 3
    assert total(series, count, http_route="/api/boom-{marker}", http_response_status_code="500") >= 1
    assert total(series, count, http_route="", http_request_method="GET", http_response_status_code="404") >= 1
    assert not any(marker in value for _, labels in series for _, value in labels), "a raw path became a label"


async def test_a_failing_scrape_hook_keeps_the_scrape_and_the_others_run() -> None:
    owner = type("Owner", (), {})()
    ran: list[str] = []

    async def broken() -> None:
        raise ConnectionError("database away")

    async def working() -> None:
        ran.append("working")

    metrics.on_scrape(owner, broken)
    metrics.on_scrape(owner, working)
    text = (await metrics.exposition(owner)).decode()
    assert ran == ["working"]
    assert "process_resident_memory_bytes" in text or "python_gc_objects_collected_total" in text
