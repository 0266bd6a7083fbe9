"""`make run`: the whole system on this machine, on embedded defaults unless told otherwise.

Starts (or takes from the environment) a Kafka-protocol broker, PostgreSQL and the Procore
sandbox, then the four services as supervised child processes; seeds a demo account; prints
`Dashboard: <url>` once everything answers its health check. A service that crashes later
(`kill -9`) is restarted with backoff, and the console says so; one that never becomes ready stops
the run. Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg
import httpx

from devstack.broker import LocalBroker, default_log_dir
from devstack.ports import free_port
from devstack.postgres import LocalPostgres
from devstack.processes import ServiceSpec, Supervisor, python_module
from devstack.traces import TraceViewer, find_viewer, trace_viewer
from shared import db
from shared.broker import ensure_topics
from shared.provision import LOGIN_ROLES, Layout, provision
from shared.topics import Topics


@dataclass
class Infra:
    kafka: str
    database_url: str
    """An administrator's DSN (provisioning only; each service gets its own role's)."""
    procore_url: str | None
    """None: start our own sandbox."""


def state_dir() -> Path:
    return Path(os.environ.get("DEVSTACK_DIR", ".devstack"))


def persistent_secret(name: str, make: str) -> str:
    """Dev secrets kept in .devstack so encrypted data and sessions survive restarts."""
    path = state_dir() / "secrets" / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    if make == "fernet":
        from cryptography.fernet import Fernet

        value = Fernet.generate_key().decode()
    else:
        value = secrets.token_urlsafe(48)
    path.write_text(value)
    path.chmod(0o600)
    return value


@contextlib.contextmanager
def infrastructure(storage: str) -> Iterator[Infra]:
    with ExitStack() as stack:
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not kafka:
            broker = stack.enter_context(LocalBroker(storage=storage, log_dir=default_log_dir()))
            print(f"devstack | broker: Tansu ({broker.storage_url}) at {broker.bootstrap_servers}", flush=True)
            kafka = broker.bootstrap_servers
        # An administrator's DSN: it provisions the roles, and no child process inherits it.
        database_url = os.environ.pop("DATABASE_URL", None)
        if not database_url:
            pg = stack.enter_context(LocalPostgres(data_dir=state_dir() / "postgres", log_dir=default_log_dir()))
            print(f"devstack | postgres: embedded, data in {pg.data_dir}", flush=True)
            database_url = pg.dsn
        yield Infra(kafka, database_url, os.environ.get("PROCORE_BASE_URL"))


async def provision_database(admin_dsn: str, prefix: str) -> dict[str, str]:
    """Each service's role and schemas (idempotent, with the administrator's DSN, which only this process sees);
    returns each service's DATABASE_URL: its own role, with its password (kept in .devstack/secrets)."""
    layout = Layout(prefix)
    passwords = {service: persistent_secret(f"db-{service}", "token") for service in LOGIN_ROLES}
    conn = await asyncpg.connect(admin_dsn)
    try:
        await provision(conn, layout, passwords)
    finally:
        await conn.close()
    prefix_note = f", prefix {prefix!r}" if prefix else ""
    print(f"devstack | database: one role per service ({', '.join(LOGIN_ROLES)}{prefix_note})", flush=True)
    return {service: db.with_role(admin_dsn, layout.role(service), passwords[service]) for service in LOGIN_ROLES}


def service_specs(
    infra: Infra, procore_url: str, gateway_port: int, dsns: dict[str, str], viewer: TraceViewer | None = None
) -> list[ServiceSpec]:
    """`dsns`: service → its DATABASE_URL (provision_database); `viewer`: where the services send their traces."""
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "KAFKA_SESSION_TIMEOUT_MS": os.environ.get("KAFKA_SESSION_TIMEOUT_MS", "6000"),
        "HTTP_HOST": "127.0.0.1",
        **({"OTEL_EXPORTER_OTLP_ENDPOINT": viewer.url} if viewer is not None else {}),
    }
    procore = {
        "PROCORE_BASE_URL": procore_url,
        "PROCORE_LOGIN_URL": os.environ.get("PROCORE_LOGIN_URL", procore_url),
        "PROCORE_CLIENT_ID": os.environ.get("PROCORE_CLIENT_ID", "sandbox-client"),
        "PROCORE_CLIENT_SECRET": os.environ.get("PROCORE_CLIENT_SECRET", "sandbox-secret"),
    }
    # A schema prefix lets several systems share one database (the e2e tests do).
    schema_prefix = os.environ.get("DEVSTACK_SCHEMA_PREFIX", "")
    ports = {name: free_port() for name in ("aggregator", "publisher", "mapping", "mapping-internal")}
    # The publisher and the gateway reach the mapping service's internal API on a port of its own, never its public one.
    mapping_internal = f"http://127.0.0.1:{ports['mapping-internal']}"
    internal = {"INTERNAL_API_TOKEN": os.environ.get("INTERNAL_API_TOKEN") or persistent_secret("internal", "token")}
    specs = []
    for name, extra in (
        ("aggregator", {}),
        (
            "mapping",
            {
                **procore,
                **internal,
                # Several keys may be given, the encrypting one first (rotate-keys); else the one kept in .devstack.
                "TOKEN_ENCRYPTION_KEYS": os.environ.get("TOKEN_ENCRYPTION_KEYS")
                or persistent_secret("token-key", "fernet"),
                "INTERNAL_HTTP_PORT": str(ports["mapping-internal"]),
                # Procore delivers webhooks to the gateway: the sandbox reaches it on loopback (real Procore cannot:
                # set WEBHOOK_DESTINATION_URL to the gateway's public URL, or the reconcile alone catches edits).
                "WEBHOOK_DESTINATION_URL": os.environ.get(
                    "WEBHOOK_DESTINATION_URL",
                    f"http://127.0.0.1:{gateway_port}/webhooks/procore" if infra.procore_url is None else "",
                ),
                "WEBHOOK_KEEPER_INTERVAL_S": os.environ.get("WEBHOOK_KEEPER_INTERVAL_S", "5"),
                # Our sandbox implements PKCE (RFC 7636); Procore's documentation does not describe it.
                "PROCORE_OAUTH_PKCE": os.environ.get(
                    "PROCORE_OAUTH_PKCE", "true" if infra.procore_url is None else "false"
                ),
            },
        ),
        # the publisher asks the mapping service for each account's Procore access token
        ("publisher", {**procore, **internal, "PROCORE_TOKENS_URL": mapping_internal}),
    ):
        port = ports[name]
        specs.append(
            ServiceSpec(
                name=name,
                argv=python_module(f"services.{name}"),
                env={
                    **common,
                    **extra,
                    "DATABASE_URL": dsns[name],
                    "HTTP_PORT": str(port),
                    "DB_SCHEMA": f"{schema_prefix}{name}",
                },
                health_url=f"http://127.0.0.1:{port}/health",
            )
        )
    specs.append(
        ServiceSpec(
            name="gateway",
            argv=python_module("services.gateway"),
            env={
                **common,
                "DATABASE_URL": dsns["gateway"],  # reads the aggregator's and the mapping service's views only
                "HTTP_PORT": str(gateway_port),
                # Development: HS256 development tokens and the one-click dev login, on loopback only (the gateway
                # refuses DEV_LOGIN otherwise). JWKS_URL, JWT_ISSUER and JWT_AUDIENCE from the environment add
                # MobiClocks core's tokens.
                "ENVIRONMENT": "development",
                "JWT_SECRET": os.environ.get("JWT_SECRET") or persistent_secret("jwt", "token"),
                "DEV_LOGIN": os.environ.get("DEV_LOGIN", "true"),
                **{name: os.environ[name] for name in ("JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE") if name in os.environ},
                "AGGREGATOR_SCHEMA": f"{schema_prefix}aggregator",
                "MAPPING_SCHEMA": f"{schema_prefix}mapping",
                # OAuth codes and service-account secrets go to the mapping service over HTTP, never Kafka.
                "MAPPING_URL": mapping_internal,
                **internal,
                **({"TRACE_URL_TEMPLATE": viewer.trace_url_template} if viewer is not None else {}),
            },
            health_url=f"http://127.0.0.1:{gateway_port}/health",
        )
    )
    return specs


async def run_system(storage: str = "memory", demo: bool = True, gateway_port: int = 8000, traces: bool = True) -> int:
    with infrastructure(storage) as infra:
        topics = Topics(os.environ.get("TOPIC_PREFIX", ""))
        await ensure_topics(infra.kafka, topics.all())
        supervisor = Supervisor(log_dir=default_log_dir(), prefix_width=10)
        specs: list[ServiceSpec] = []
        procore_url = infra.procore_url
        if procore_url is None:
            sandbox_port = free_port()
            procore_url = f"http://127.0.0.1:{sandbox_port}"
            specs.append(
                ServiceSpec(
                    name="sandbox",
                    argv=python_module("sandbox.procore", "--port", str(sandbox_port)),
                    health_url=f"{procore_url}/_sandbox/health",
                )
            )
        viewer_program = find_viewer() if traces else None
        viewer = trace_viewer(viewer_program, state_dir()) if viewer_program else None
        if viewer is not None:
            specs.insert(0, viewer.spec)
        port = gateway_port if _port_free(gateway_port) else free_port()
        # A schema prefix lets several systems share one database (the e2e tests do).
        dsns = await provision_database(infra.database_url, os.environ.get("DEVSTACK_SCHEMA_PREFIX", ""))
        specs.extend(service_specs(infra, procore_url, port, dsns, viewer))
        runner = asyncio.create_task(supervisor.run(specs))
        ready = asyncio.create_task(supervisor.ready.wait())
        await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            ready.cancel()
            return runner.result()
        base = f"http://127.0.0.1:{port}"
        if demo and infra.procore_url is None:
            try:
                from sandbox.demo import ACCOUNT, seed_sandbox, send_demo

                seeded = await seed_sandbox(procore_url)
                count = await send_demo(infra.kafka, topics, seeded, date.today(), base)
                supervisor.say(
                    f"demo: account '{ACCOUNT}', {count} timelogs (last week and this), "
                    f"Procore company {seeded['company_id']}"
                )
            except (httpx.HTTPError, OSError, RuntimeError) as error:
                supervisor.say(f"demo data not loaded: {error!r}")
        supervisor.say(f"Procore sandbox: {procore_url}   API docs: {base}/docs")
        if viewer is not None:
            supervisor.say(f"Traces: {viewer.url}   (Phoenix; each publish in an entry's history links to its trace)")
        elif traces:
            supervisor.say("Traces: no viewer (make traces-viewer installs one into .venv-traces)")
        print(f"Dashboard: {base}/dev/login?account_id=demo", flush=True)
        return await runner


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main(storage: str, demo: bool, gateway_port: int, traces: bool = True) -> int:
    try:
        return asyncio.run(run_system(storage, demo, gateway_port, traces))
    except KeyboardInterrupt:
        return 0
    finally:
        sys.stdout.flush()
