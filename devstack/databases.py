"""Database helpers over any PostgreSQL DSN (the embedded server's or an external one): point a DSN at another
database, create or drop a database, drop the schemas of a test run."""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit, urlunsplit

import asyncpg

__all__ = ["create_database", "drop_database", "drop_schemas_with_prefix", "quote_ident", "with_database"]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def with_database(dsn: str, database: str) -> str:
    """Return ``dsn`` pointing at another database (keeps host, port, user and query)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def create_database(dsn: str, name: str) -> str:
    """``CREATE DATABASE`` (no error if it exists); returns the DSN of the new database."""
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()
    return with_database(dsn, name)


async def drop_database(dsn: str, name: str) -> None:
    """``DROP DATABASE IF EXISTS … WITH (FORCE)`` (disconnects other sessions)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


async def drop_schemas_with_prefix(dsn: str, prefix: str) -> list[str]:
    """Drop (CASCADE) every schema whose name starts with ``prefix``; returns the names dropped."""
    if not prefix:
        raise ValueError("refusing to drop schemas with an empty prefix")
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select nspname from pg_namespace where nspname like $1 escape '\\' order by nspname", pattern
        )
        names = [str(r["nspname"]) for r in rows]
        for name in names:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
        return names
    finally:
        await conn.close()
