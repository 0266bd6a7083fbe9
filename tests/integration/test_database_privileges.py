"""Least privilege in PostgreSQL: who may do what, on a database provisioned and migrated as in production.

One role per service owns its schema (and its read contract) and nothing else; the gateway owns nothing and may
only SELECT the views of the aggregator's and the mapping service's read contracts. The matrix below is built from
the catalog after every migration ran, so a table or view added later is covered without touching this test.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from devstack.postgres import LocalPostgres
from shared import db
from shared.provision import LOGIN_ROLES, OWNERS, READ_CONTRACTS, Layout, provision
from tests.support.database import ProvisionedDatabase, migrated, provisioned

pytestmark = pytest.mark.integration

TABLE_OPS = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_OPS = ("SELECT", "UPDATE", "USAGE")
SCHEMA_OPS = ("USAGE", "CREATE")


@pytest.fixture(scope="module")
async def system(postgres_dsn: str) -> AsyncIterator[ProvisionedDatabase]:
    """One system, provisioned and migrated by its own roles (module-wide: the tests below only look)."""
    async with provisioned(postgres_dsn, f"priv_{uuid.uuid4().hex[:8]}_") as database:
        await migrated(database)
        yield database


def schema_kinds(layout: Layout) -> dict[str, tuple[str, str]]:
    """schema → (owning service, 'own' | 'read'), plus `public` (no owner of ours)."""
    kinds = {layout.schema(s): (s, "own") for s in OWNERS}
    kinds |= {layout.read_schema(s): (s, "read") for s in READ_CONTRACTS}
    return kinds | {"public": ("", "public")}


def intended(role: str, owner: str, kind: str, op: str) -> bool:
    """The model: an owner may do anything in its schemas; the gateway may read (only) the read contracts; nobody
    may create anything in `public` (its USAGE is PostgreSQL's default and harmless then)."""
    if kind == "public":
        return op == "USAGE"
    if role == owner:
        return True
    return role == "gateway" and kind == "read" and op in ("SELECT", "USAGE")


MATRIX = """
WITH roles AS (SELECT unnest($1::text[]) AS service, unnest($2::text[]) AS role),
     schemas AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY($3::text[])),
     objects AS (  -- ours; `public` holds whatever else the cluster runs
         SELECT s.nspname, c.relname AS object, c.relkind::text AS kind, c.oid
           FROM pg_class c JOIN schemas s ON s.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND s.nspname <> 'public')
SELECT r.service, o.nspname AS schema, o.object, o.kind, op.op,
       has_schema_privilege(r.role, o.nspname, 'USAGE')
       AND CASE WHEN o.kind = 'S' THEN has_sequence_privilege(r.role, o.oid, op.op)
                ELSE has_table_privilege(r.role, o.oid, op.op) END AS allowed
  FROM roles r CROSS JOIN objects o
  JOIN LATERAL unnest(CASE WHEN o.kind = 'S' THEN $4::text[] ELSE $5::text[] END) AS op(op) ON true
UNION ALL
SELECT r.service, s.nspname, '', 'schema', op.op, has_schema_privilege(r.role, s.nspname, op.op)
  FROM roles r CROSS JOIN schemas s CROSS JOIN unnest($6::text[]) AS op(op)
"""


async def privilege_matrix(admin: str, layout: Layout) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(admin)
    try:
        return await conn.fetch(
            MATRIX,
            list(LOGIN_ROLES),
            [layout.role(s) for s in LOGIN_ROLES],
            list(schema_kinds(layout)),
            list(SEQUENCE_OPS),
            list(TABLE_OPS),
            list(SCHEMA_OPS),
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("role", LOGIN_ROLES)
async def test_each_role_may_do_exactly_what_the_model_intends(system: ProvisionedDatabase, role: str) -> None:
    """Each role, every schema, table, view and sequence, SELECT/INSERT/UPDATE/DELETE (USAGE/CREATE on schemas)."""
    kinds = schema_kinds(system.layout)
    rows = [r for r in await privilege_matrix(system.admin, system.layout) if r["service"] == role]
    wrong = [
        f"{r['op']} on {r['schema']}.{r['object'] or '(schema)'}: {'allowed' if r['allowed'] else 'denied'}"
        for r in rows
        if r["allowed"] != intended(role, *kinds[r["schema"]], r["op"])
    ]
    assert wrong == [], f"{role}: " + "; ".join(wrong)
    # Not vacuous: every schema was looked at, the tokens table and the read views among the objects.
    objects = {(r["schema"], r["object"]) for r in rows}
    assert {(s, "") for s in kinds} <= objects
    assert (system.schema("mapping"), "connections") in objects
    assert (system.layout.read_schema("mapping"), "connection_status") in objects
    assert (system.layout.read_schema("aggregator"), "entries") in objects
    readable = {(r["schema"], r["object"]) for r in rows if r["op"] == "SELECT" and r["allowed"] and r["object"]}
    if role == "gateway":
        assert readable
        assert all(schema in {system.layout.read_schema(s) for s in READ_CONTRACTS} for schema, _ in readable)


async def test_read_contracts_hold_views_only_and_every_object_belongs_to_its_service(
    system: ProvisionedDatabase,
) -> None:
    conn = await asyncpg.connect(system.admin)
    try:
        for service in OWNERS:
            schemas = [system.schema(service)] + (
                [system.layout.read_schema(service)] if service in READ_CONTRACTS else []
            )
            owners = await conn.fetch(
                "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class"
                " WHERE relnamespace = ANY(SELECT oid FROM pg_namespace WHERE nspname = ANY($1::text[]))"
                " UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = ANY($1::text[])",
                schemas,
            )
            assert [r["owner"] for r in owners] == [system.layout.role(service)]
        for service in READ_CONTRACTS:
            kinds = await conn.fetch(
                "SELECT DISTINCT relkind::text AS kind FROM pg_class WHERE relnamespace = to_regnamespace($1)",
                system.layout.read_schema(service),
            )
            assert [r["kind"] for r in kinds] == ["v"]
        # The mapping service's contract has no column that could hold a token or a secret.
        columns = await conn.fetch(
            "SELECT table_name || '.' || column_name AS name FROM information_schema.columns WHERE table_schema = $1",
            system.layout.read_schema("mapping"),
        )
        names = [r["name"] for r in columns]
        assert names
        assert not [n for n in names if any(word in n for word in ("token", "secret", "client_id"))]
    finally:
        await conn.close()


async def test_every_role_has_minimal_attributes(system: ProvisionedDatabase) -> None:
    conn = await asyncpg.connect(system.admin)
    try:
        rows = await conn.fetch(
            "SELECT rolname, rolcanlogin, rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls"
            "       AS powerful, has_database_privilege(rolname, current_database(), 'CREATE') AS creates_schemas"
            "  FROM pg_roles WHERE rolname = ANY($1::text[])",
            system.layout.roles(),
        )
    finally:
        await conn.close()
    found = {r["rolname"]: r for r in rows}
    assert set(found) == set(system.layout.roles())
    for name, row in found.items():
        assert row["rolcanlogin"] is (name in {system.layout.role(s) for s in LOGIN_ROLES}), name
        assert row["powerful"] is False, name
        assert row["creates_schemas"] is False, name


class Allowed(Exception):
    """Rolls back what a statement that was allowed did."""


async def denied(dsn: str, sql: str) -> bool:
    """Whether `sql` is refused for lack of privilege when run as `dsn`'s role (in a read-write transaction, which
    the gateway's sessions are not by default), rolled back either way."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET default_transaction_read_only = off")
        async with conn.transaction():
            await conn.execute(sql)
            raise Allowed
    except asyncpg.InsufficientPrivilegeError:
        return True
    except Allowed:
        return False
    finally:
        await conn.close()


async def test_the_gateway_reads_the_views_and_nothing_else_and_writes_nothing(system: ProvisionedDatabase) -> None:
    gateway = system.dsn("gateway")
    agg, agg_read = system.schema("aggregator"), system.layout.read_schema("aggregator")
    mapping, mapping_read = system.schema("mapping"), system.layout.read_schema("mapping")
    # The views answer.
    conn = await asyncpg.connect(gateway)
    try:
        assert await conn.fetchval(f'SELECT count(*) FROM "{agg_read}".entries') == 0
        assert await conn.fetchval(f'SELECT count(*) FROM "{mapping_read}".connection_status') == 0
        # Sessions are read-only by default: even what PUBLIC may do (a temporary table) is refused.
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("CREATE TEMPORARY TABLE scratch (id int)")
    finally:
        await conn.close()
    # The services' own tables, the tokens table among them, are out of reach.
    for table in (f'"{mapping}".connections', f'"{mapping}".oauth_attempts', f'"{agg}".entries', f'"{agg}".outbox'):
        assert await denied(gateway, f"SELECT * FROM {table}"), table
    assert await denied(gateway, f'SELECT * FROM "{system.schema("publisher")}".attempts')
    # Nothing is writable, even in a read-write transaction.
    for statement in (
        f"INSERT INTO \"{mapping_read}\".setups (account_id) VALUES ('x')",
        f'UPDATE "{agg_read}".entries SET status = status',
        f'DELETE FROM "{agg_read}".publish_history',
        f'CREATE TABLE "{agg_read}".mine (id int)',
        "CREATE TABLE public.mine (id int)",
        f'CREATE SCHEMA "{system.layout.prefix}gateway"',
    ):
        assert await denied(gateway, statement), statement


@pytest.mark.parametrize(
    ("service", "other"), [("aggregator", "mapping"), ("mapping", "aggregator"), ("publisher", "mapping")]
)
async def test_a_service_cannot_touch_another_services_tables(
    system: ProvisionedDatabase, service: str, other: str
) -> None:
    dsn = system.dsn(service)
    table = {"mapping": "connections", "aggregator": "entries"}[other]
    assert await denied(dsn, f'SELECT * FROM "{system.schema(other)}".{table}')
    assert await denied(dsn, f'CREATE TABLE "{system.schema(other)}".mine (id int)')
    assert await denied(dsn, "CREATE TABLE public.mine (id int)")
    # its own schema is its own
    assert not await denied(dsn, f'CREATE TABLE "{system.schema(service)}".scratch (id int)')


async def test_a_service_refuses_to_migrate_as_anyone_but_its_schemas_owner(
    system: ProvisionedDatabase, postgres_dsn: str
) -> None:
    with pytest.raises(db.MigrationError, match=r"belongs to role .* connects as"):
        await db.migrate(postgres_dsn, system.schema("aggregator"), "services.aggregator.migrations")
    with pytest.raises(db.MigrationError, match="belongs to role"):
        await db.migrate(system.dsn("mapping"), system.schema("aggregator"), "services.aggregator.migrations")


async def test_without_provisioning_a_service_says_what_to_do(postgres_dsn: str) -> None:
    with pytest.raises(db.MigrationError, match=r"does not exist: provision the database first"):
        await db.migrate(postgres_dsn, f"nowhere_{uuid.uuid4().hex[:8]}", "services.publisher.migrations")


async def test_provisioning_is_idempotent_and_strips_extra_attributes(postgres_dsn: str) -> None:
    layout = Layout(f"again_{uuid.uuid4().hex[:8]}_")
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'CREATE ROLE "{layout.role("publisher")}" LOGIN CREATEDB CREATEROLE')
        async with provisioned(postgres_dsn, layout.prefix) as database:
            assert await provision(conn, layout) == []
            row = await conn.fetchrow(
                "SELECT rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1", layout.role("publisher")
            )
            assert tuple(row) == (False, False)
            await migrated(database)
            assert await provision(conn, layout) == []
    finally:
        await conn.close()


async def test_schemas_made_before_roles_existed_are_handed_over_with_everything_in_them(postgres_dsn: str) -> None:
    """An existing deployment: the administrator created the schema and ran the old migrations."""
    layout = Layout(f"old_{uuid.uuid4().hex[:8]}_")
    schema = layout.schema("aggregator")
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(
            f"""
            CREATE SCHEMA "{schema}";
            CREATE TABLE "{schema}".entries (id bigserial PRIMARY KEY, status text);
            CREATE VIEW "{schema}".open_entries AS SELECT id FROM "{schema}".entries WHERE status = 'open';
            CREATE SEQUENCE "{schema}".numbers;
            CREATE TYPE "{schema}".mood AS ENUM ('ok');
            CREATE TYPE "{schema}".pair AS (a int, b int);
            CREATE TYPE "{schema}".span AS RANGE (subtype = int);
            CREATE DOMAIN "{schema}".positive AS int CHECK (VALUE > 0);
            CREATE FUNCTION "{schema}".one() RETURNS int LANGUAGE sql AS 'SELECT 1';
            """
        )
        async with provisioned(postgres_dsn, layout.prefix) as database:
            owners = await conn.fetch(
                "SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relnamespace = to_regnamespace($1)"
                " UNION SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE pronamespace = to_regnamespace($1)"
                " UNION SELECT pg_get_userbyid(typowner) FROM pg_type WHERE typnamespace = to_regnamespace($1)"
                " UNION SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1",
                schema,
            )
            assert [r["owner"] for r in owners] == [layout.role("aggregator")]
            # the service now migrates it as its own role
            await conn.execute(f'DROP TABLE "{schema}".entries CASCADE')
            await migrated(database, "aggregator")
    finally:
        await conn.close()


@contextmanager
def scram_over_tcp() -> Iterator[Path]:
    """A pg_hba.conf trusting the Unix socket (the administrator) and asking a password over TCP; readable by the
    server's own system user (the embedded server runs as one when we are root)."""
    directory = Path(tempfile.mkdtemp(prefix="devstack-hba-"))
    try:
        directory.chmod(0o755)
        hba = directory / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        hba.chmod(0o644)
        yield hba
    finally:
        shutil.rmtree(directory)


async def test_roles_log_in_with_their_passwords_where_the_server_demands_them(tmp_path: Path) -> None:
    """On a server that trusts nothing over TCP (like compose's), each role logs in with its password, sent to the
    server only as a SCRAM verifier."""
    layout = Layout("pw_")
    passwords = {service: f"{service}-password-{uuid.uuid4().hex}" for service in LOGIN_ROLES}
    with scram_over_tcp() as hba:
        async with LocalPostgres(settings={"hba_file": str(hba)}, log_dir=tmp_path) as pg:
            await check_logins(pg, layout, passwords)


async def check_logins(pg: LocalPostgres, layout: Layout, passwords: dict[str, str]) -> None:
    """Each role in with its password, none with another's; the server stored a verifier, not the password."""
    admin = await asyncpg.connect(pg.socket_dsn)
    try:
        await provision(admin, layout, passwords)
        stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", "pw_gateway")
    finally:
        await admin.close()
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert passwords["gateway"] not in stored
    for service in LOGIN_ROLES:
        conn = await asyncpg.connect(db.with_role(pg.dsn, layout.role(service), passwords[service]))
        try:
            assert await conn.fetchval("SELECT current_user") == layout.role(service)
        finally:
            await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(db.with_role(pg.dsn, layout.role("gateway"), passwords["mapping"]))
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(db.with_role(pg.dsn, "postgres", None))
