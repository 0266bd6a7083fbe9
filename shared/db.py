"""asyncpg pool per service schema, and a very small migration runner.

Each service owns one schema and its numbered SQL files (`NNN_name.sql`). Migrations run
in order, each in its own transaction, under an advisory lock so concurrent starts of
the same service are safe; applied versions are recorded in `<schema>.schema_migrations`.

Least privilege (deploy/README.md, "Database roles"): the schemas and roles are created beforehand by
`shared.provision` with an administrator's DSN; a service migrates and runs as its own role, which owns its
schema (and its read contract `<schema>_read`, if it publishes one) and nothing else. The runner refuses to
migrate a schema it does not own, so no table ends up owned by an administrator.

Migrations may name the provisioned objects with placeholders (Flyway's syntax), replaced by quoted
identifiers: `${schema}` (the service's schema), `${read_schema}` (its read contract: views only) and
`${readers}` (the role granted SELECT on the read contract; the gateway's role is a member).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\}")


class MigrationError(RuntimeError):
    """The database is not provisioned for this service's role (or a migration is malformed)."""


def read_schema(schema: str) -> str:
    """The schema of views a service publishes for readers (the gateway): its read contract."""
    return f"{schema}_read"


def readers_role(schema: str) -> str:
    """The NOLOGIN role granted USAGE on the read contract and SELECT on its views; readers are its members."""
    return f"{schema}_readers"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def with_role(dsn: str, role: str, password: str | None = None) -> str:
    """`dsn` with another user (and its password, or none): the same server and database, as `role`."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    user = quote(role, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
    return urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


REPLAN_AFTER_S = 10
"""How long a connection keeps a prepared statement (asyncpg prepares every statement it runs; its default is
300 s). After five executions PostgreSQL may keep one generic plan per prepared statement, made for the tables as
they were then — and nothing replans it while a table grows unless an ANALYZE runs (autovacuum may be off, or
behind). Measured: an aggregator started on empty tables kept sequential scans of `entries` for its primary-key
lookups as the table grew; its PostgreSQL CPU per batch doubled and p99 produce → visible at 1,000 events/s was
260 to 480 ms instead of 160 to 260 ms (`tests/bench/RESULTS.md`). Preparing again every 10 s costs a round trip
per statement and connection; planning every execution instead (`plan_cache_mode`) cost ~15 % of the aggregator's
throughput (its statements carry arrays of thousands of ids)."""


async def create_pool(
    dsn: str, schema: str, min_size: int = 1, max_size: int = 10, replan_after_s: float = REPLAN_AFTER_S
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        max_cached_statement_lifetime=replan_after_s,
        server_settings={"search_path": f"{quote_ident(schema)},public", "application_name": schema, **OLTP_SETTINGS},
    )
    assert pool is not None
    return pool


OLTP_SETTINGS = {"jit": "off"}
"""Session settings of every service connection. JIT compilation pays off for long analytical queries; the
services' statements take milliseconds, and when a table's statistics lag behind its growth (a rebuild filling
`entries`, autovacuum behind) the planner's inflated cost estimates made PostgreSQL compile every statement with
LLVM: measured, a 10 M rebuild fell from 2,100 to under 900 (job site, day) groups/s with half the CPU in the
kernel."""


def migration_files(package: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every `NNN_name.sql` in `package`, sorted by version."""
    found = []
    for entry in resources.files(package).iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"duplicate migration numbers in {package}: {versions}")
    return found


def placeholders(schema: str) -> dict[str, str]:
    """What `${name}` stands for in the migrations of `schema` (quoted identifiers)."""
    return {
        "schema": quote_ident(schema),
        "read_schema": quote_ident(read_schema(schema)),
        "readers": quote_ident(readers_role(schema)),
    }


def expand(sql: str, values: Mapping[str, str], name: str = "migration") -> str:
    """Replace `${name}` placeholders; an unknown one is an error (never left for PostgreSQL to misread)."""

    def one(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise MigrationError(f"{name}: unknown placeholder ${{{match.group(1)}}} (known: {sorted(values)})")
        return values[match.group(1)]

    return _PLACEHOLDER.sub(one, sql)


async def _check_owner(conn: asyncpg.Connection, schema: str) -> None:
    """The schema exists and belongs to the role we run as."""
    row = await conn.fetchrow(
        "SELECT pg_get_userbyid(nspowner) AS owner, current_user AS me FROM pg_namespace WHERE nspname = $1", schema
    )
    if row is None:
        raise MigrationError(
            f"schema {schema} does not exist: provision the database first (python -m shared.provision, "
            "deploy/README.md), then run this service as its own role"
        )
    if row["owner"] != row["me"]:
        raise MigrationError(
            f"schema {schema} belongs to role {row['owner']}, but this service connects as {row['me']}: "
            f"set DATABASE_URL to the {row['owner']} role (a service runs as the owner of its schema, never as an "
            "administrator)"
        )


async def _check_read_contract(conn: asyncpg.Connection, schema: str) -> None:
    """The read contract's schema (ours) and its readers role exist: provisioning made them."""
    found = await conn.fetchrow(
        "SELECT to_regnamespace($1) IS NOT NULL AS schema, to_regrole($2) IS NOT NULL AS role",
        quote_ident(read_schema(schema)),
        quote_ident(readers_role(schema)),
    )
    missing = [f"schema {read_schema(schema)}"] if not found["schema"] else []
    missing += [f"role {readers_role(schema)}"] if not found["role"] else []
    if missing:
        raise MigrationError(
            f"{' and '.join(missing)} missing: provision the database first (python -m shared.provision)"
        )


async def migrate(dsn: str, schema: str, package: str) -> list[str]:
    """Apply the pending migrations of `package` to `schema` (owned by the role of `dsn`); return the names applied."""
    applied: list[str] = []
    values = placeholders(schema)
    table = f"{quote_ident(schema)}.schema_migrations"
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
            await _check_owner(conn, schema)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} ("
                " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch(f"SELECT version FROM {table}")}
            pending = [(v, name, sql) for v, name, sql in migration_files(package) if v not in done]
            if any({"read_schema", "readers"} & set(_PLACEHOLDER.findall(sql)) for _, _, sql in pending):
                await _check_read_contract(conn, schema)
            for version, name, sql in pending:
                await conn.execute(f"SET LOCAL search_path TO {quote_ident(schema)}, public")
                await conn.execute(expand(sql, values, name))
                await conn.execute(f"INSERT INTO {table} (version, name) VALUES ($1, $2)", version, name)
                applied.append(name)
    finally:
        await conn.close()
    return applied


async def drop_schemas(dsn: str, schemas: Iterable[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


def record_to_dict(record: asyncpg.Record) -> dict[str, Any]:
    return dict(record.items())
