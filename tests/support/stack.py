"""Run the event-driven services in this process (real broker, real PostgreSQL, real HTTP to the sandbox).

In-process so one test can collect every service's spans with one in-memory exporter; the
e2e tests run the same services as separate processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from faststream.asgi import AsgiFastStream
from opentelemetry.sdk.trace import TracerProvider

from services.aggregator.bootstrap import build_app as build_aggregator
from services.aggregator.config import AggregatorSettings
from services.mapping.bootstrap import build_app as build_mapping
from services.mapping.config import MappingSettings
from services.publisher.bootstrap import build_app as build_publisher
from services.publisher.config import PublisherSettings
from shared.broker import ensure_topics
from shared.topics import Topics
from tests.support.database import layout_of, role_dsn

TEST_TOKEN_KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="
"""A valid Fernet key (the mapping service refuses to start without one)."""


@dataclass(frozen=True)
class StackConfig:
    kafka: str
    dsn: str
    """The administrator's DSN (maybe through a proxy): services connect through it, each as its own role."""
    prefix: str
    schemas: dict[str, str]
    """Provisioned by the `database` fixture (role names equal schema names)."""
    procore_url: str = "http://127.0.0.1:9"

    def dsn_of(self, service: str) -> str:
        """The DATABASE_URL of `service` (aggregator, publisher, mapping, gateway): its own role."""
        return role_dsn(self.dsn, layout_of(self.schemas).role(service))

    def common(self, service: str) -> dict[str, Any]:
        return {
            "kafka_bootstrap_servers": self.kafka,
            "database_url": self.dsn_of(service),
            "topic_prefix": self.prefix,
            "db_schema": self.schemas[service],
            "kafka_session_timeout_ms": 2000,
        }

    def procore(self) -> dict[str, Any]:
        return {
            "procore_base_url": self.procore_url,
            "procore_login_url": self.procore_url,  # the sandbox serves OAuth too
            "procore_client_id": "sandbox-client",
            "procore_client_secret": "sandbox-secret",
            "procore_max_attempts": 3,
        }

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)


def make_apps(cfg: StackConfig, which: tuple[str, ...], provider: TracerProvider | None) -> dict[str, AsgiFastStream]:
    apps: dict[str, AsgiFastStream] = {}
    if "aggregator" in which:
        apps["aggregator"] = build_aggregator(
            AggregatorSettings(**cfg.common("aggregator"), outbox_poll_interval_s=0.2), provider
        )
    if "publisher" in which:
        apps["publisher"] = build_publisher(PublisherSettings(**cfg.common("publisher"), **cfg.procore()), provider)
    if "mapping" in which:
        apps["mapping"] = build_mapping(
            MappingSettings(**cfg.common("mapping"), **cfg.procore(), token_encryption_key=TEST_TOKEN_KEY), provider
        )
    return apps


@asynccontextmanager
async def running(
    cfg: StackConfig,
    which: tuple[str, ...] = ("aggregator", "publisher", "mapping"),
    provider: TracerProvider | None = None,
) -> AsyncIterator[dict[str, AsgiFastStream]]:
    await ensure_topics(cfg.kafka, cfg.topics.all())
    apps = make_apps(cfg, which, provider)
    async with AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.start_lifespan_context())
        yield apps
