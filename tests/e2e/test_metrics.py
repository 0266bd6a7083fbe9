"""Every service's /metrics during an end-to-end publish: the key series move.

The whole system as `make run` starts it (tests.support.system), driven through its public edges
like tests/e2e/test_system.py; each service's /metrics is scraped before and after one publish.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import httpx
import pytest

from shared.events import TimelogUpserted
from tests.support.account import manpower_ready_account
from tests.support.kafka import eventually, produce
from tests.support.scrape import Series, metrics_url, scrape, service_pids, total
from tests.support.system import System, running_system

pytestmark = pytest.mark.e2e
DAY = date(2026, 11, 19)
SERVICES = ("aggregator", "mapping", "publisher", "gateway")


@pytest.fixture
def system(kafka_bootstrap: str, postgres_dsn: str, unique: str) -> Iterator[System]:
    with running_system(kafka_bootstrap, postgres_dsn, unique) as running:
        yield running


async def scrape_all(urls: dict[str, str]) -> dict[str, Series]:
    return {name: await scrape(url) for name, url in urls.items()}


async def test_every_service_reports_the_key_series_moving_during_a_publish(
    system: System, kafka_bootstrap: str
) -> None:
    base, sandbox_url = system.ready()
    topics, account = system.topics, "metrics-account"
    pids = service_pids(system.proc.pid, SERVICES)
    assert set(pids) == set(SERVICES), pids
    urls = {name: await metrics_url(pid) for name, pid in pids.items()}
    before = await scrape_all(urls)

    async with httpx.AsyncClient(base_url=base, timeout=10) as gw:
        ready = await manpower_ready_account(
            gw,
            sandbox_url,
            kafka_bootstrap,
            topics,
            account=account,
            user="sre",
            company="Metrics",
            site=("site-m", "Tower M"),
            vendor="co-m",
        )
        auth, seeded = ready.auth, ready.company
        await produce(
            kafka_bootstrap,
            topics.timelogs,
            [
                TimelogUpserted(
                    account_id=account,
                    timelog_id=f"tl-m{i}",
                    revision=1,
                    employee_id=f"emp-{i}",
                    company_id="co-m",
                    crew_tag="Pour",
                    job_site_id="site-m",
                    work_date=DAY,
                    duration_seconds=8 * 3600,
                    pay_id="REG",
                )
                for i in (1, 2)
            ],
            key=f"{account}:site-m".encode(),
        )

        async def rows() -> list[dict[str, object]]:
            response = await gw.get(f"/api/modules/manpower/cells/site-m/{DAY}", headers=auth)
            return list(response.json()["rows"]) if response.status_code == 200 else []

        await eventually(rows, lambda r: len(r) == 1 and r[0]["status"] == "todo", timeout_s=60, what="To do")
        publish = await gw.post(
            "/api/modules/manpower/publish",
            json={"action": "publish", "scope": {"kind": "cell", "job_site_id": "site-m", "work_date": str(DAY)}},
            headers=auth,
        )
        assert publish.status_code == 202, publish.text
        await eventually(rows, lambda r: r[0]["status"] == "published", timeout_s=60, what="Published")

    # the aggregator's entry gauges are refreshed at most every 15 s: wait for a scrape that shows the publish
    async def aggregator() -> Series:
        return await scrape(urls["aggregator"])

    await eventually(
        aggregator,
        lambda s: total(s, "aggregator_entries", module="manpower", status="published") >= 1,
        timeout_s=60,
        what="aggregator_entries{status=published}",
    )
    after = await scrape_all(urls)

    def moved(service: str, name: str, **labels: str) -> float:
        return total(after[service], name, **labels) - total(before[service], name, **labels)

    consumed = "messaging_client_consumed_messages_total"
    # the aggregator consumed both timelogs and the publish command and result; its outbox sent the request
    assert moved("aggregator", consumed, messaging_destination_name=topics.timelogs) >= 2
    assert moved("aggregator", consumed, messaging_destination_name=topics.publish_commands) >= 1
    assert moved("aggregator", consumed, messaging_destination_name=topics.publish_results) >= 1
    assert moved("aggregator", "messaging_process_duration_seconds_count", messaging_destination_name=topics.timelogs)
    assert moved(
        "aggregator", "messaging_consumed_message_age_seconds_count", messaging_destination_name=topics.timelogs
    )
    assert moved("aggregator", "outbox_sent_messages_total") >= 1
    assert total(after["aggregator"], "aggregator_entries", module="manpower", status="published") >= 1
    assert total(after["aggregator"], "messaging_kafka_consumer_lag", messaging_destination_name=topics.timelogs) == 0
    assert any(
        name == "messaging_kafka_consumer_lag" and ("messaging_destination_name", topics.timelogs) in labels
        for name, labels in after["aggregator"]
    ), "no lag series for the timelog topic"
    # the publisher consumed the request, called Procore and answered "published"
    assert moved("publisher", consumed, messaging_destination_name=topics.publish_requests) >= 1
    assert moved("publisher", "publisher_publish_requests_total", module="manpower", outcome="published") == 1
    assert moved("publisher", "publisher_publish_duration_seconds_count", outcome="published") == 1
    procore_calls = moved(
        "publisher",
        "http_client_request_duration_seconds_count",
        url_template="*/manpower_logs",
        http_response_status_code="201",
    )
    assert procore_calls == 1
    company = str(seeded["company_id"])
    assert total(after["publisher"], "procore_rate_limit_remaining", procore_company_id=company) > 0
    # the mapping service handled the commands (connect, setup, mappings) and called Procore for the connection
    assert moved("mapping", consumed, messaging_destination_name=topics.mapping_commands) >= 4
    assert moved("mapping", "http_client_request_duration_seconds_count") >= 1
    # the gateway counted its requests by route template, the publish command among them
    gateway = "http_server_request_duration_seconds_count"
    assert moved("gateway", gateway, http_route="/api/modules/{module}/publish", http_response_status_code="202") == 1
    assert moved("gateway", gateway, http_route="/api/modules/{module}/cells/{job_site_id}/{work_date}") >= 2
    # every service reports its process
    for name in SERVICES:
        assert total(after[name], "process_resident_memory_bytes") > 0, name
