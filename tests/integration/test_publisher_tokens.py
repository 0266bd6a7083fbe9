"""The publisher asks the mapping service's internal port for a token for each company it calls, naming the company:
a company not bound to the request's account fails that entry at once, for good, and Procore never hears of it."""

from __future__ import annotations

import uuid

import pytest

from shared.events import Module, PublishOutcome
from tests.support.mapping import INTERNAL_TOKEN, connect_service_account, mapping_settings, serve_mapping
from tests.support.publisher import Requests, Results, Sandbox, request_for, running_publisher
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration


async def test_a_company_not_bound_to_the_account_fails_its_entries_for_good(
    kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str], sandbox_url: str, sandbox: Sandbox
) -> None:
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox_url)
    account = f"acc-{uuid.uuid4().hex[:8]}"
    own, other = await sandbox.company("Own"), await sandbox.company("Someone else's")
    mine = request_for(Module.MANPOWER, own, account_id=account)
    theirs = request_for(Module.MANPOWER, other, account_id=account)
    async with serve_mapping(mapping_settings(cfg)) as mapping_url:
        assert (await connect_service_account(cfg, mapping_url, account, own.id))["status"] == "done"
        since = await sandbox.last_seq()
        async with (
            running_publisher(cfg, procore_tokens_url=mapping_url, internal_api_token=INTERNAL_TOKEN),
            Requests(cfg.kafka, cfg.topics.publish_requests) as requests,
            Results(cfg.kafka, cfg.topics.publish_results) as results,
        ):
            await requests.send(theirs, mine)
            refused = await results.wait(theirs.request_id)
            assert refused.outcome is PublishOutcome.FAILED
            assert refused.message == f"Procore company {other.id} is not connected to this account"
            assert (await results.wait(mine.request_id)).outcome is PublishOutcome.PUBLISHED
            await results.settle(2.0)
            assert len(results.by_request[theirs.request_id]) == 1, "permanent: not retried"
    assert [e for e in await sandbox.requests(other.id, since) if e["path"].startswith("/rest/")] == []
    assert len(await sandbox.records(Module.MANPOWER, own)) == 1
