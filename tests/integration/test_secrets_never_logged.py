"""No secret in any log line or span: a whole publish with DEBUG logging on every logger and every span recorded.

The path: a Procore user's consent (OAuth through the gateway, PKCE), a customer's service account connected through
the gateway, setup and mappings, a timelog, its entry published to the sandbox — with the access token expired on
the way, so the publisher is refused (401), asks for a forced refresh and the refresh token rotates. Every service
runs in this process under uvicorn (the mapping service's internal API on its own port) and shares one in-memory
span exporter; the sandbox runs as a process of its own (Procore's logs are not ours). Then no access token, refresh
token, client secret (the app's or the customer's), authorization code, PKCE verifier, internal API secret or token
encryption key may appear in a captured log record, in anything written to stdout/stderr, or in a span's name,
attributes, events, links or status.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devstack.ports import free_port
from services.gateway.bootstrap import build_app as build_gateway
from services.mapping.adapters.procore_links import TokenCipher
from services.mapping.bootstrap import build_app as build_mapping
from shared.broker import ensure_topics
from shared.events import ReferenceKind, ReferenceUpserted, TimelogUpserted
from tests.support.kafka import eventually, produce
from tests.support.mapping import (
    INTERNAL_TOKEN,
    auth,
    fetch,
    gateway_settings,
    internal_url,
    mapping_settings,
    oauth_round_trip,
    outcome,
    sandbox_user,
    serve_asgi,
    service_account,
)
from tests.support.publisher import running_publisher
from tests.support.stack import TEST_TOKEN_KEY, StackConfig, running

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 19)
APP_CLIENT_SECRET = "sandbox-secret"
"""The sandbox's registered app (PROCORE_CLIENT_SECRET of the services)."""


TEST_CLIENT: contextvars.ContextVar[bool] = contextvars.ContextVar("test_client", default=False)
"""Set in the test's own task once the services run: what the test's browser and Procore's consent page log is the
user's and Procore's, not the system's (the services' tasks were created before, so they never see it set)."""


class Everything(logging.Handler):
    """Every record of every logger the system writes, formatted as a handler would write it (exceptions included)."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not TEST_CLIENT.get():
            self.lines.append(self.format(record))


@asynccontextmanager
async def debug_logging_everywhere() -> AsyncIterator[Everything]:
    """DEBUG (and below) on every logger there is, each one also writing to `Everything`."""
    handler = Everything()
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    before = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(1)
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level in before:
            logger.setLevel(level)
            logger.removeHandler(handler)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    """The sandbox as a process of its own: its logs are Procore's, not the system's."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.procore", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/_sandbox/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError("the sandbox stopped")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@asynccontextmanager
async def on_port(app: Any, port: int) -> AsyncIterator[str]:
    """Under uvicorn as in production (access log on)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="debug"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "server stopped during startup"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def span_text(span: ReadableSpan) -> str:
    parts = [span.name, str(dict(span.attributes or {})), str(span.status.description or "")]
    parts += [f"{event.name} {dict(event.attributes or {})}" for event in span.events]
    parts += [str(dict(link.attributes or {})) for link in span.links]
    return "\n".join(parts)


async def stored_secrets(cfg: StackConfig) -> dict[str, str]:
    """Every secret the mapping service holds now, decrypted (what must never be logged)."""
    schema = cfg.schemas["mapping"]
    cipher = TokenCipher(TEST_TOKEN_KEY)
    found = {}
    for row in await fetch(
        cfg.dsn, f'SELECT account_id, access_token, refresh_token, client_secret FROM "{schema}".connections'
    ):
        for column in ("access_token", "refresh_token", "client_secret"):
            if row[column]:
                found[f"{column} of {row['account_id']}"] = cipher.decrypt(row[column], row["account_id"])
    for row in await fetch(cfg.dsn, f'SELECT account_id, code_verifier FROM "{schema}".oauth_attempts'):
        if row["code_verifier"]:
            found[f"PKCE verifier of {row['account_id']}"] = cipher.decrypt(row["code_verifier"], row["account_id"])
    return found


async def test_a_whole_publish_logs_and_traces_no_secret(
    sandbox: str,
    kafka_bootstrap: str,
    postgres_dsn: str,
    unique: str,
    schemas: dict[str, str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    async with httpx.AsyncClient(base_url=sandbox) as control:
        company = (
            await control.post(
                "/_sandbox/companies",
                json={"name": f"Leak-free {unique}", "projects": [{"name": "Tower"}], "vendors": [{"name": "Acme"}]},
            )
        ).json()
        other = (await control.post("/_sandbox/companies", json={"name": f"Customer SA {unique}"})).json()
    company_id, project, vendor = company["company_id"], company["projects"][0]["id"], company["vendors"][0]
    login = f"pat-{unique}@leak.example"
    await sandbox_user(sandbox, login, [company_id])
    sa_id, sa_secret = await service_account(sandbox, other["company_id"])

    cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", schemas, procore_url=sandbox)
    await ensure_topics(kafka_bootstrap, cfg.topics.all())
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    account, customer = f"acc-{unique}", f"acc-sa-{unique}"
    mapping = mapping_settings(cfg, log_level="DEBUG")
    gateway_port = free_port()
    gateway = gateway_settings(
        cfg,
        internal_url(mapping),
        public_base_url=f"http://127.0.0.1:{gateway_port}",
        http_port=gateway_port,
        log_level="DEBUG",
    )
    seen: dict[str, str] = {}

    async with (
        serve_asgi(build_mapping(mapping, provider)),
        on_port(build_gateway(gateway, provider), gateway_port) as gateway_url,
        running(cfg, ("aggregator",), provider),
        running_publisher(
            cfg,
            provider,
            procore_tokens_url=internal_url(mapping),
            internal_api_token=INTERNAL_TOKEN,
            log_level="DEBUG",
        ),
        debug_logging_everywhere() as logs,
        httpx.AsyncClient(base_url=gateway_url, timeout=30) as browser,
    ):
        TEST_CLIENT.set(True)
        headers = auth(account)

        async def done(response: httpx.Response) -> None:
            assert response.status_code == 202, response.text
            assert (await outcome(cfg.dsn, cfg.schemas["mapping"], response.json()["command_id"]))["status"] == "done"

        # A Procore user's consent, through the gateway (state, code and PKCE on the way).
        connected = await oauth_round_trip(browser, headers, login)
        assert (await outcome(cfg.dsn, cfg.schemas["mapping"], connected.command_id))["status"] == "done"
        seen |= {"authorization code": connected.code, "OAuth state": connected.state}
        # A customer's own service account, through the gateway (its secret in the request body).
        await done(
            await browser.post(
                "/api/procore/connection",
                json={"grant": "client_credentials", "client_id": sa_id, "client_secret": sa_secret},
                headers=auth(customer),
            )
        )
        seen |= await stored_secrets(cfg)

        setup = {"procore_company_id": company_id, "enabled_modules": ["manpower"]}
        await done(await browser.put("/api/setup", json=setup, headers=headers))
        references = [
            ReferenceUpserted(account_id=account, kind=ReferenceKind.JOB_SITE, entity_id="site-1", name="Site"),
            ReferenceUpserted(account_id=account, kind=ReferenceKind.COMPANY, entity_id="co-1", name="Subcontractor"),
        ]
        await produce(cfg.kafka, cfg.topics.reference, references, key=account.encode())
        await done(await browser.put("/api/mappings/project/site-1", json={"procore_id": project}, headers=headers))
        await done(await browser.put("/api/mappings/vendor/co-1", json={"procore_id": vendor}, headers=headers))
        timelog = TimelogUpserted(
            account_id=account,
            timelog_id="tl-1",
            revision=1,
            employee_id="emp-1",
            company_id="co-1",
            job_site_id="site-1",
            work_date=DAY,
            duration_seconds=8 * 3600,
            pay_id="REG",
        )
        await produce(cfg.kafka, cfg.topics.timelogs, [timelog], key=f"{account}:site-1".encode())

        async def rows() -> list[dict[str, Any]]:
            answer = await browser.get(f"/api/modules/manpower/cells/site-1/{DAY}", headers=headers)
            return list(answer.json()["rows"]) if answer.status_code == 200 else []

        await eventually(rows, lambda r: len(r) == 1 and r[0]["status"] == "todo", timeout_s=30, what="To do")
        # Procore forgets every token it issued: the publisher is refused, the mapping service refreshes.
        async with httpx.AsyncClient(base_url=sandbox) as control:
            assert (await control.post("/_sandbox/tokens/expire")).status_code < 300
        scope = {"kind": "cell", "job_site_id": "site-1", "work_date": str(DAY)}
        published = await browser.post(
            "/api/modules/manpower/publish", json={"action": "publish", "scope": scope}, headers=headers
        )
        assert published.status_code == 202, published.text
        (row,) = await eventually(rows, lambda r: r[0]["status"] not in ("todo", "publishing"), timeout_s=60)
        assert row["status"] == "published", row
        seen |= {f"after refresh: {name}": value for name, value in (await stored_secrets(cfg)).items()}
        captured_lines = list(logs.lines)

    refreshed = await fetch(
        cfg.dsn, f'SELECT refresh_count FROM "{cfg.schemas["mapping"]}".connections WHERE account_id = $1', account
    )
    assert refreshed[0]["refresh_count"] >= 1, "the token was refreshed on the way"
    seen |= {
        "internal API secret": INTERNAL_TOKEN,
        "app client secret": APP_CLIENT_SECRET,
        "customer client secret": sa_secret,
        "token encryption key": TEST_TOKEN_KEY,
    }
    assert seen["access_token of " + account] != seen["after refresh: access_token of " + account]

    # The capture saw the whole run: DEBUG lines of the libraries, both servers' access logs, the internal API.
    text = "\n".join(captured_lines)
    assert len(captured_lines) > 200, len(captured_lines)
    for expected in ("DEBUG", "httpx", "uvicorn.access", "/internal/procore-token", "/oauth/procore/callback"):
        assert expected in text, f"nothing like {expected!r} was captured"
    finished = spans.get_finished_spans()
    assert any("/internal/procore-token" in span_text(s) for s in finished), "the token requests were traced"

    printed = capfd.readouterr()
    places = {
        "log records": text,
        "stdout/stderr": printed.out + printed.err,
        **{f"span {s.name!r}": span_text(s) for s in finished},
    }
    leaks = sorted(
        {
            f"{what} in {where}: {line.replace(value, '<' + what + '>')[:300]}"
            for what, value in seen.items()
            for where, body in places.items()
            for line in body.splitlines()
            if value in line
        }
    )
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)
