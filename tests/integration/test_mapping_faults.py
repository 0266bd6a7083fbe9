"""Unavailable is not invalid, in the mapping service: Procore, network and database outages while a command
runs are retried — never recorded as the command's "failed" outcome — while Procore's refusals (4xx) are
recorded with Procore's message. The internal token endpoint answers 503 (try again) for an outage.

Real broker, real PostgreSQL (through a TCP proxy the test cuts), the sandbox over real HTTP with
injected faults.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.broker import ensure_topics
from shared.events import (
    Command,
    ConfigureSetup,
    Module,
    ProcoreEntity,
    SyncProcoreEntities,
)
from tests.sandbox_fixtures import run_sandbox
from tests.support.database import role_dsn
from tests.support.kafka import eventually, produce
from tests.support.mapping import (
    INTERNAL_TOKEN,
    Instance,
    connect_service_account,
    connect_user,
    fetch,
    mapping_instance,
    outcome,
    sandbox_user,
)
from tests.support.proxy import TcpProxy
from tests.support.stack import StackConfig

pytestmark = pytest.mark.integration

ADMIN = ["procore.setup", "procore.mapping"]
COMPANY = {"name": "Faulty Builders", "vendors": [{"name": f"Vendor {i}"} for i in range(1, 8)]}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


@dataclass
class Ctx:
    cfg: StackConfig
    sandbox: str
    account: str
    company_id: int
    instance: Instance
    database: TcpProxy
    """The mapping service's only way to PostgreSQL (the test reads and checks through the direct DSN)."""

    async def send(self, *commands: Command) -> list[dict[str, Any]]:
        await produce(self.cfg.kafka, self.cfg.topics.mapping_commands, list(commands), key=self.account.encode())
        schema = self.cfg.schemas["mapping"]
        return [await outcome(self.cfg.dsn, schema, c.event_id, timeout_s=60) for c in commands]

    def sync_vendors(self) -> SyncProcoreEntities:
        return SyncProcoreEntities(
            account_id=self.account, entity=ProcoreEntity.VENDOR, requested_by="mapper", permissions=ADMIN
        )

    async def fault(self, **spec: Any) -> int:
        async with httpx.AsyncClient(base_url=self.sandbox) as control:
            created = await control.post("/_sandbox/faults", json=spec)
        assert created.status_code == 201, created.text
        return int(created.json()["id"])

    async def fault_hits(self, fault_id: int) -> int:
        async with httpx.AsyncClient(base_url=self.sandbox) as control:
            faults = (await control.get("/_sandbox/faults")).json()
        return int(next(f["hits"] for f in faults if f["id"] == fault_id))

    async def token(self, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as http:
            return await http.post(
                f"{self.instance.internal}/internal/procore-token",
                json=body,
                headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
            )


@pytest.fixture
async def ctx(
    sandbox: str, kafka_bootstrap: str, postgres_dsn: str, unique: str, schemas: dict[str, str]
) -> AsyncIterator[Ctx]:
    async with httpx.AsyncClient(base_url=sandbox) as control:
        company = (await control.post("/_sandbox/companies", json=COMPANY)).json()
    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    proxy, proxied_dsn = TcpProxy.for_dsn(postgres_dsn)
    async with proxy, mapping_instance(cfg, database_url=role_dsn(proxied_dsn, schemas["mapping"])) as instance:
        c = Ctx(cfg, sandbox, f"acc-{unique}", company["company_id"], instance, proxy)
        assert (await connect_service_account(cfg, instance.internal, c.account, c.company_id))["status"] == "done"
        setup = ConfigureSetup(
            account_id=c.account,
            procore_company_id=c.company_id,
            enabled_modules=list(Module),
            requested_by="admin",
            permissions=ADMIN,
        )
        assert [o["status"] for o in await c.send(setup)] == ["done"]
        yield c


async def test_procore_outage_during_a_sync_is_retried_not_recorded_as_failed(ctx: Ctx) -> None:
    # More failures than the Procore client's own attempts (3): the command itself must be tried again.
    errors = await ctx.fault(path="/rest/v1.0/vendors", kind="status", status=502, times=3)
    (synced,) = await ctx.send(ctx.sync_vendors())
    assert synced["status"] == "done", synced
    assert synced["details"]["total"] == 7, synced
    assert await ctx.fault_hits(errors) == 3

    # The connection drops without an answer (a network failure, not an HTTP status).
    dropped = await ctx.fault(path="/rest/v1.0/vendors", kind="drop", times=3)
    (synced,) = await ctx.send(ctx.sync_vendors())
    assert synced["status"] == "done", synced
    assert synced["details"]["total"] == 7, synced
    assert await ctx.fault_hits(dropped) == 3


async def test_connecting_resumes_from_the_stored_tokens_after_an_outage(ctx: Ctx) -> None:
    """The code is exchanged at the callback, then Procore fails while the companies are proven: the finishing
    command is retried from the stored tokens; the code is never spent again."""
    account = f"{ctx.account}-oauth"
    login = f"pat-{account}@faults.example"
    await sandbox_user(ctx.sandbox, login, [ctx.company_id])
    async with httpx.AsyncClient(base_url=ctx.sandbox) as control:
        await control.delete("/_sandbox/requests")
    companies = await ctx.fault(path="/rest/v1.0/companies", kind="status", status=503, retry_after=0, times=3)
    done = await connect_user(ctx.cfg, ctx.instance.internal, account, login)
    assert done["status"] == "done", done
    assert "a Procore user's consent (OAuth)" in done["message"], done
    assert await ctx.fault_hits(companies) == 3
    async with httpx.AsyncClient(base_url=ctx.sandbox) as control:
        grants = (await control.get("/_sandbox/requests", params={"path": "/oauth/token", "method": "POST"})).json()
    assert len(grants) == 1, "the code was exchanged once"
    # The company is already the first account's: this one proved it too, but may not have it.
    assert "already connected to another MobiClocks account" in done["message"]
    assert (await ctx.token({"account_id": account, "procore_company_id": ctx.company_id})).status_code == 403


async def test_procore_refusing_a_sync_is_recorded_with_its_message(ctx: Ctx) -> None:
    await ctx.fault(path="/rest/v1.0/vendors", kind="status", status=403, times=1)
    (refused,) = await ctx.send(ctx.sync_vendors())
    assert refused["status"] == "failed", refused
    assert refused["message"] == "Sandbox injected error 403", refused


async def test_database_outage_during_a_command_is_retried(ctx: Ctx) -> None:
    topic = ctx.cfg.topics.mapping_commands
    tried = len(ctx.instance.consumed(topic))
    await ctx.database.cut()
    reconfigure = ConfigureSetup(
        account_id=ctx.account,
        procore_company_id=ctx.company_id,
        enabled_modules=[Module.MANPOWER],
        requested_by="admin",
        permissions=ADMIN,
    )
    await produce(ctx.cfg.kafka, topic, [reconfigure], key=ctx.account.encode())
    await eventually(lambda: _consumed(ctx, topic), lambda n: n > tried, what="an attempt while the database is away")
    await ctx.database.restore()
    done = await outcome(ctx.cfg.dsn, ctx.cfg.schemas["mapping"], reconfigure.event_id)
    assert done["status"] == "done", done
    (setup,) = await fetch(
        ctx.cfg.dsn,
        f'SELECT enabled_modules FROM "{ctx.cfg.schemas["mapping"]}".setups WHERE account_id = $1',
        ctx.account,
    )
    assert setup["enabled_modules"] == ["manpower"]


async def test_token_endpoint_answers_503_while_procore_or_the_database_is_away(ctx: Ctx) -> None:
    body = {"account_id": ctx.account, "force_refresh": True}
    await ctx.fault(path="/oauth/token", kind="status", status=502, times=1)
    unavailable = await ctx.token(body)
    assert unavailable.status_code == 503, unavailable.text
    assert unavailable.headers["retry-after"], unavailable.text
    assert (await ctx.token(body)).status_code == 200, "the connection was left as it was"

    await ctx.database.cut()
    try:
        away = await ctx.token({"account_id": ctx.account})
    finally:
        await ctx.database.restore()
    assert away.status_code == 503, away.text
    assert "temporarily unavailable" in away.json()["message"], away.text
    assert (await ctx.token({"account_id": ctx.account})).status_code == 200


async def _consumed(ctx: Ctx, topic: str) -> int:
    return len(ctx.instance.consumed(topic))
