"""asyncpg pool per service schema, and a very small migration runner.

Each service owns one schema and its numbered SQL files (`NNN_name.sql`). Migrations run
in order, each in its own transaction, under an advisory lock so concurrent starts of
the same service are safe; applied versions are recorded in `<schema>.schema_migrations`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

import asyncpg

_MIGRATION = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, schema: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": f"{schema},public", "application_name": schema},
    )
    assert pool is not None
    return pool


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


async def migrate(dsn: str, schema: str, package: str) -> list[str]:
    """Apply the pending migrations of `package` to `schema`; return the names applied."""
    applied: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations')}
            for version, name, sql in migration_files(package):
                if version in done:
                    continue
                await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
                await conn.execute(sql)
                await conn.execute(
                    f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES ($1, $2)', version, name
                )
                applied.append(name)
    finally:
        await conn.close()
    return applied


async def drop_schemas(dsn: str, schemas: Iterable[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def record_to_dict(record: asyncpg.Record) -> dict[str, Any]:
    return dict(record.items())
