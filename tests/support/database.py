"""A provisioned database per test: the roles and schemas of one system (as `shared.provision` makes them for
compose and `make run`), named with the test's prefix and dropped afterwards (roles are cluster-wide).

Services connect as their own roles, exactly as deployed; tests themselves read and seed through the
administrator's DSN. Roles get the administrator's password, if its DSN has one (a trusting server, the usual
case here, needs none).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import asyncpg

from shared import db
from shared.provision import LOGIN_ROLES, OWNERS, Layout, deprovision, provision


def _password(admin_dsn: str) -> str | None:
    password = urlsplit(admin_dsn).password
    return unquote(password) if password else None


def role_dsn(admin_dsn: str, role: str) -> str:
    """The administrator's DSN (maybe through a proxy) as one of the test's roles."""
    return db.with_role(admin_dsn, role, _password(admin_dsn))


def layout_of(schemas: Mapping[str, str]) -> Layout:
    """The layout the `schemas` fixture's names come from (role names equal schema names)."""
    layout = Layout(schemas["aggregator"].removesuffix("aggregator"))
    assert {s: layout.schema(s) for s in schemas} == dict(schemas), f"not a provisioned layout: {schemas}"
    return layout


@dataclass(frozen=True)
class ProvisionedDatabase:
    admin: str
    """The administrator's DSN: tests seed and inspect through it."""
    layout: Layout

    @property
    def schemas(self) -> dict[str, str]:
        return self.layout.schemas

    def dsn(self, service: str) -> str:
        """How `service` (aggregator, publisher, mapping, gateway) connects: as its own role."""
        return role_dsn(self.admin, self.layout.role(service))

    def schema(self, service: str) -> str:
        return self.layout.schema(service)


async def provision_layout(admin_dsn: str, layout: Layout) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        password = _password(admin_dsn)
        await provision(conn, layout, dict.fromkeys(LOGIN_ROLES, password))
    finally:
        await conn.close()


async def drop_layout(admin_dsn: str, layout: Layout) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await deprovision(conn, layout)
    finally:
        await conn.close()


@asynccontextmanager
async def provisioned(admin_dsn: str, prefix: str) -> AsyncIterator[ProvisionedDatabase]:
    """Roles and schemas named `<prefix><service>` for the duration of the block."""
    layout = Layout(prefix)
    try:
        await provision_layout(admin_dsn, layout)
        yield ProvisionedDatabase(admin_dsn, layout)
    finally:  # also after a failed provisioning: whatever it left, and what the test made under these names
        await drop_layout(admin_dsn, layout)


async def migrated(database: ProvisionedDatabase, *services: str) -> None:
    """Apply the migrations of `services` as their own roles (what each service does at start)."""
    for service in services or OWNERS:
        await db.migrate(database.dsn(service), database.schema(service), f"services.{service}.migrations")
