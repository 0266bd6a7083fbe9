"""Infrastructure for pytest fixtures: Kafka bootstrap servers and a PostgreSQL DSN.

Resolution order, for each of the two:

1. an environment variable: ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL``;
2. testcontainers, when a Docker engine answers a ping (checked once, fails fast when
   there is no engine; set ``DEVSTACK_DOCKER=0`` to skip it): Apache Kafka in KRaft mode /
   the ``postgres`` image;
3. local child processes: :class:`~devstack.broker.LocalBroker` (Tansu, in memory) /
   :class:`~devstack.postgres.LocalPostgres` (embedded PostgreSQL, temporary cluster).

Typical ``conftest.py``::

    @pytest.fixture(scope="session")
    def kafka() -> Iterator[str]:
        with testinfra.kafka_bootstrap() as bootstrap:
            yield bootstrap

Use :func:`run_id` to prefix topics, consumer groups and schemas so runs never collide.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from .broker import LocalBroker
from .postgres import LocalPostgres

__all__ = [
    "KAFKA_ENV",
    "POSTGRES_ENV",
    "Source",
    "docker_available",
    "kafka_bootstrap",
    "kafka_source",
    "postgres_dsn",
    "postgres_source",
    "run_id",
]

log = logging.getLogger("devstack.testinfra")

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
POSTGRES_ENV = "DATABASE_URL"
KAFKA_IMAGE = os.environ.get("DEVSTACK_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
POSTGRES_IMAGE = os.environ.get("DEVSTACK_POSTGRES_IMAGE", "postgres:16-alpine")

Source = Literal["env", "docker", "local"]


@functools.cache
def run_id() -> str:
    """Short random id for this test run (``$DEVSTACK_RUN_ID`` if set): a letter + 7 hex digits.

    Safe as a prefix for topic, consumer-group, schema and database names.
    """
    return os.environ.get("DEVSTACK_RUN_ID") or "t" + secrets.token_hex(4)[:7]


def _docker_socket_candidates() -> list[Path]:
    paths = [Path("/var/run/docker.sock"), Path.home() / ".docker" / "run" / "docker.sock"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        paths.append(Path(runtime) / "docker.sock")
    return paths


@functools.cache
def docker_available(timeout: float = 2.0) -> bool:
    """True if a Docker engine answers a ping within ``timeout`` s. Cached for the process.

    Without ``DOCKER_HOST`` and without a Docker socket file this returns at once.
    """
    if os.environ.get("DEVSTACK_DOCKER", "").lower() in ("0", "false", "no", "off"):
        return False
    docker_host = os.environ.get("DOCKER_HOST")
    base_url: str | None = docker_host
    if not docker_host:
        sockets = [p for p in _docker_socket_candidates() if p.exists()]
        if not sockets:
            log.debug("no Docker socket found; skipping testcontainers")
            return False
        base_url = f"unix://{sockets[0]}"
    try:
        import docker

        client = docker.DockerClient(base_url=base_url, timeout=max(1, round(timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as exc:
        log.debug("Docker engine not available (%s): %r", base_url, exc)
        return False


def kafka_source() -> Source:
    """Which source :func:`kafka_bootstrap` will use (decides without starting anything)."""
    if os.environ.get(KAFKA_ENV):
        return "env"
    if docker_available():
        return "docker"
    return "local"


def postgres_source() -> Source:
    """Which source :func:`postgres_dsn` will use (decides without starting anything)."""
    if os.environ.get(POSTGRES_ENV):
        return "env"
    if docker_available():
        return "docker"
    return "local"


def _import_container(name: str, cls: str) -> Any:
    """testcontainers ≥ 4.10 moved modules under ``testcontainers.community``; support both."""
    for module in (f"testcontainers.community.{name}", f"testcontainers.{name}"):
        try:
            return getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"testcontainers: cannot import {cls}")


@contextlib.contextmanager
def kafka_bootstrap(*, log_dir: Path | str | None = None) -> Iterator[str]:
    """Yield a ``host:port`` bootstrap string from the first source that works."""
    source = kafka_source()
    if source == "env":
        bootstrap = os.environ[KAFKA_ENV]
        log.info("kafka: using %s=%s", KAFKA_ENV, bootstrap)
        yield bootstrap
        return
    if source == "docker":
        kafka_container = _import_container("kafka", "KafkaContainer")
        container = kafka_container(image=KAFKA_IMAGE).with_kraft()
        with container:
            bootstrap = str(container.get_bootstrap_server())
            log.info("kafka: testcontainers %s at %s", KAFKA_IMAGE, bootstrap)
            yield bootstrap
        return
    with LocalBroker(log_dir=log_dir) as broker:
        log.info("kafka: local Tansu broker at %s (pid %s)", broker.bootstrap_servers, broker.pid)
        yield broker.bootstrap_servers


def _asyncpg_url(url: str) -> str:
    """``postgresql+psycopg2://…`` → ``postgresql://…`` (asyncpg/libpq form)."""
    scheme, sep, rest = url.partition("://")
    return ("postgresql" if scheme.startswith("postgres") else scheme) + sep + rest


@contextlib.contextmanager
def postgres_dsn(*, log_dir: Path | str | None = None) -> Iterator[str]:
    """Yield a ``postgresql://`` DSN from the first source that works."""
    source = postgres_source()
    if source == "env":
        dsn = os.environ[POSTGRES_ENV]
        log.info("postgres: using %s", POSTGRES_ENV)
        yield dsn
        return
    if source == "docker":
        postgres_container = _import_container("postgres", "PostgresContainer")
        with postgres_container(POSTGRES_IMAGE, driver=None) as container:
            dsn = _asyncpg_url(str(container.get_connection_url()))
            log.info("postgres: testcontainers %s", POSTGRES_IMAGE)
            yield dsn
        return
    with LocalPostgres(log_dir=log_dir) as pg:
        log.info("postgres: embedded server pid %s at %s", pg.pid, pg.dsn)
        yield pg.dsn
