"""The gateway's public webhook route and the mapping service behind it, over real HTTP, PostgreSQL and Kafka: only
a hook's secret gets in, each event is taken once, our own writes and creates change nothing, someone else's
update goes to `mapping.changes`, and the route is rate-limited per hook — with no secret in any log line."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.gateway.bootstrap import build_app as build_gateway
from services.mapping import webhook_rules as rules
from shared.broker import ensure_topics
from shared.events import ProcoreRecordChanged
from tests.support.kafka import consume
from tests.support.mapping import fetch, gateway_settings, mapping_settings, serve_mapping
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration
COMPANY = 4_000_000_001
ACCOUNT = "acc-hooks"


class Route:
    def __init__(self, cfg: StackConfig, gateway: httpx.AsyncClient, secret: str) -> None:
        self.cfg, self.gateway, self.secret = cfg, gateway, secret

    async def deliver(self, event: dict[str, Any], secret: str | None = None) -> httpx.Response:
        headers = {"Authorization": rules.authorization_header(secret or self.secret)}
        return await self.gateway.post("/webhooks/procore", json=event, headers=headers)


@pytest.fixture
async def route(kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]) -> AsyncIterator[Route]:
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url="http://127.0.0.1:9")
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    async with serve_mapping(mapping_settings(cfg)) as mapping_url:
        secret = rules.new_secret()
        # The account chose the (bound) company, as any account with a hook has: a hook of a company no setup
        # chooses is the keeper's to delete, and its first tick could do so before the first delivery.
        schema = schemas["mapping"]
        await fetch(
            cfg.dsn,
            f"""INSERT INTO "{schema}".company_bindings (procore_company_id, account_id, name, proof)
                VALUES ($1, $2, 'Hooks Co', 'user_consent')""",
            COMPANY,
            ACCOUNT,
        )
        await fetch(
            cfg.dsn, f'INSERT INTO "{schema}".setups (account_id, procore_company_id) VALUES ($1, $2)', ACCOUNT, COMPANY
        )
        await fetch(
            cfg.dsn,
            f"""INSERT INTO "{schemas["mapping"]}".webhook_hooks
                (procore_company_id, account_id, procore_hook_id, secret_sha256, destination_url)
                VALUES ($1, $2, 7, $3, 'http://gateway/webhooks/procore')""",
            COMPANY,
            ACCOUNT,
            rules.secret_digest(secret),
        )
        gateway = build_gateway(gateway_settings(cfg, mapping_url, rate_limit_webhook="5/minute"))
        async with (
            gateway.router.lifespan_context(gateway),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as http,
        ):
            yield Route(cfg, http, secret)


def event(
    event_id: int, event_type: str = "update", source: str | None = None, company: int = COMPANY
) -> dict[str, Any]:
    return {
        "id": event_id,
        "ulid": f"01JD00000000000000000000{event_id:02d}",
        "timestamp": "2026-11-18T12:00:01.000001Z",
        "event_type": event_type,
        "resource_name": "Timecard Entries",
        "resource_id": 5_000_000_000 + event_id,
        "company_id": company,
        "project_id": 6,
        "user_id": 9,
        "api_version": "v2",
        "metadata": {"source_user_id": 9, "source_application_id": source},
    }


async def test_a_delivery_is_authenticated_taken_once_and_reported_without_logging_its_secret(
    route: Route, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    outcomes = []
    for body, secret in (
        (event(1), None),  # someone's edit
        (event(1), None),  # Procore delivers it again
        (event(2, source="sandbox-client"), None),  # our own write (the app's client)
        (event(3, event_type="create"), None),
    ):
        answer = await route.deliver(body, secret)
        assert answer.status_code == 200, answer.text
        outcomes.append(answer.json()["outcome"])
    assert outcomes == ["conflict", "duplicate", "own_write", "create"]

    forged = await route.deliver(event(4), secret="not-our-secret")
    assert forged.status_code == 401
    other_company = await route.deliver(event(5, company=COMPANY + 1))
    assert other_company.status_code == 400
    assert (
        await route.deliver(event(6))
    ).status_code == 429  # the hook's 5 deliveries a minute are spent (per secret: the forged one counted apart)

    (record,) = await consume(route.cfg.kafka, route.cfg.topics.mapping_changes, 1)
    change = ProcoreRecordChanged.model_validate(json.loads(record.value))
    assert (change.account_id, change.procore_company_id, change.procore_id) == (ACCOUNT, COMPANY, 5_000_000_001)
    assert change.module.value == "timecard"
    assert change.change.value == "updated"
    assert change.source == "webhook"
    taken = await fetch(
        route.cfg.dsn,
        f'SELECT delivery_id FROM "{route.cfg.schemas["mapping"]}".webhook_deliveries ORDER BY delivery_id',
    )
    assert len(taken) == 3  # events 1, 2 and 3: each once
    assert route.secret not in caplog.text
