"""State and event together: the mapping service's changes survive a crash between commit and send.

Every change — a command's, a two-way link's, the status change a refused token refresh causes — is
written to the outbox in the transaction that makes it. The test keeps every relay from sending (it
holds the lock relays take), stops the instance that committed the changes, and starts another one:
its relay sends them, once each and in order, and no command is redone.
Real broker, real PostgreSQL, the sandbox over real HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.mapping.adapters.procore_links import TokenCipher
from shared.broker import ensure_topics
from shared.events import (
    ConfigureSetup,
    Module,
    ReferenceKind,
    ReferenceUpserted,
)
from tests.sandbox_fixtures import run_sandbox
from tests.support.kafka import eventually, produce
from tests.support.mapping import (
    INTERNAL_TOKEN,
    changes_on_topic,
    connect_user,
    fetch,
    mapping_instance,
    outbox_rows,
    outcome,
    relays_held,
    sandbox_user,
    sent_changes,
)
from tests.support.stack import TEST_TOKEN_KEY, StackConfig

pytestmark = pytest.mark.integration

ADMIN = ["procore.setup", "procore.mapping"]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


async def test_changes_committed_before_a_crash_are_sent_by_the_next_relay(
    sandbox: str, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=sandbox) as control:
        company = (
            await control.post(
                "/_sandbox/companies", json={"name": f"Outbox {unique}", "projects": [{"name": "Tower"}]}
            )
        ).json()
    project = company["projects"][0]["id"]
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    schema, account = schemas["mapping"], f"acc-{unique}"
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    setup = ConfigureSetup(
        account_id=account,
        procore_company_id=company["company_id"],
        enabled_modules=list(Module),
        two_way=True,
        requested_by="admin",
        permissions=ADMIN,
    )
    login = f"pat-{unique}@outbox.example"
    await sandbox_user(sandbox, login, [company["company_id"]])
    linked = ReferenceUpserted(
        account_id=account, kind=ReferenceKind.JOB_SITE, entity_id="site-1", name="Site 1", linked_procore_id=project
    )

    # Connected first: finishing a connection is itself a command sent through the outbox.
    async with mapping_instance(cfg) as connector:
        connect = await connect_user(cfg, connector.internal, account, login)
        assert connect["status"] == "done", connect
        before = await sent_changes(cfg, account)
    async with relays_held(postgres_dsn, schema):
        async with mapping_instance(cfg) as first:
            # A command, a two-way link from MobiClocks, then a refresh Procore refuses (its grant was revoked).
            await produce(kafka_bootstrap, cfg.topics.mapping_commands, [setup], key=account.encode())
            assert (await outcome(postgres_dsn, schema, setup.event_id))["status"] == "done"
            await produce(kafka_bootstrap, cfg.topics.reference, [linked], key=account.encode())
            await eventually(lambda: outbox_rows(postgres_dsn, schema), lambda rows: len(rows) == 2, what="the link")
            (row,) = await fetch(postgres_dsn, f'SELECT refresh_token FROM "{schema}".connections')
            async with httpx.AsyncClient() as http:
                refresh = TokenCipher(TEST_TOKEN_KEY).decrypt(row["refresh_token"], account)
                await http.post(f"{sandbox}/oauth/revoke", json={"token": refresh})
                refused = await http.post(
                    f"{first.internal}/internal/procore-token",
                    json={"account_id": account, "force_refresh": True},
                    headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
                )
            assert refused.status_code == 409
        # The instance is gone; what it committed waits in the outbox, none of it sent.
        pending = await outbox_rows(postgres_dsn, schema)
        assert [(r["type"], r.get("connection")) for r in pending] == [
            ("setup.changed", "connected"),
            ("mapping.changed", None),
            ("setup.changed", "needs_reauthorization"),
        ]
        assert await changes_on_topic(cfg, account) == before

    async with mapping_instance(cfg):
        sent = await sent_changes(cfg, account)
    assert before + [{k: v for k, v in c.items() if k not in ("key", "topic")} for c in pending] == sent
    assert sent[-2]["mobiclocks_id"] == "site-1"
    assert sent[-2]["procore_id"] == project
    outcomes = await fetch(postgres_dsn, f'SELECT command_id FROM "{schema}".command_outcomes')
    assert {str(r["command_id"]) for r in outcomes} == {str(setup.event_id), connect["command_id"]}, "none redone"
