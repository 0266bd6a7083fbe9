"""Least privilege in PostgreSQL: one role per service, owning its schema and nothing else.

`python -m shared.provision` runs once before the services (compose's `db-provision` job; `make run` and the
tests call `provision()` directly) with an administrator's DSN, which no service ever sees. Idempotently, it

- creates one LOGIN role per service (`aggregator`, `publisher`, `mapping`, `gateway`) with minimal
  attributes (no SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS) and sets the passwords it is given;
- creates each service's schema owned by its role, plus the read contract schema `<schema>_read` of the
  services the gateway reads (aggregator, mapping); schemas an administrator created earlier (before roles
  existed) are handed over to the role with everything in them;
- creates the NOLOGIN role `<schema>_readers` of each read contract and makes the gateway a member;
  the gateway owns nothing and its sessions are read-only by default;
- revokes CREATE on the `public` schema from PUBLIC (PostgreSQL 15+ does so already).

The grants of a read contract (USAGE on `<schema>_read`, SELECT on its views to `<schema>_readers`) are not made
here: they belong to the owning service's migrations, which run as that service's role. Names take an optional
prefix (`DB_PREFIX`) so several systems (the tests) share one cluster; roles are cluster-wide.

Passwords never appear in a statement: each is sent as a SCRAM-SHA-256 verifier computed here, so a server that
logs DDL logs no password (what `createuser` and psql's `\\password` do).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import db
from shared.db import quote_ident
from shared.settings import load_settings

OWNERS = ("aggregator", "publisher", "mapping")
"""Services that own a schema (and migrate it as their role)."""
READ_CONTRACTS = ("aggregator", "mapping")
"""Services that publish a read contract: a schema of views other roles may read."""
READERS: dict[str, tuple[str, ...]] = {"gateway": READ_CONTRACTS}
"""Roles that own nothing and read read contracts."""
LOGIN_ROLES = (*OWNERS, *READERS)

_PREFIX = re.compile(r"^([a-z_][a-z0-9_]*)?$")
_MAX_IDENTIFIER = 63


class ProvisionError(RuntimeError):
    """The cluster cannot be provisioned as asked (a name clash, an object of unknown kind to hand over)."""


@dataclass(frozen=True)
class Layout:
    """Every schema and role name of one system, from its prefix (role names equal schema names)."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ValueError(f"invalid database name prefix {self.prefix!r}: lower-case letters, digits and _")
        longest = max(len(n) for n in self.roles() + self.all_schemas())
        if longest > _MAX_IDENTIFIER:
            raise ValueError(f"prefix {self.prefix!r} too long: names would exceed {_MAX_IDENTIFIER} characters")

    def role(self, service: str) -> str:
        if service not in LOGIN_ROLES:
            raise KeyError(service)
        return f"{self.prefix}{service}"

    def schema(self, service: str) -> str:
        if service not in OWNERS:
            raise KeyError(f"{service} owns no schema")
        return f"{self.prefix}{service}"

    def read_schema(self, service: str) -> str:
        if service not in READ_CONTRACTS:
            raise KeyError(f"{service} publishes no read contract")
        return db.read_schema(self.schema(service))

    def readers(self, service: str) -> str:
        """The role granted SELECT on the service's read contract."""
        if service not in READ_CONTRACTS:
            raise KeyError(f"{service} publishes no read contract")
        return db.readers_role(self.schema(service))

    @property
    def schemas(self) -> dict[str, str]:
        """service → its schema."""
        return {s: self.schema(s) for s in OWNERS}

    def roles(self) -> list[str]:
        return [f"{self.prefix}{s}" for s in LOGIN_ROLES] + [
            db.readers_role(f"{self.prefix}{s}") for s in READ_CONTRACTS
        ]

    def all_schemas(self) -> list[str]:
        return [f"{self.prefix}{s}" for s in OWNERS] + [db.read_schema(f"{self.prefix}{s}") for s in READ_CONTRACTS]


def scram_sha_256(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The verifier PostgreSQL stores for `password` (RFC 5802/7677, PostgreSQL's `rolpassword` format)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class RoleState:
    login: bool
    superuser: bool = False
    createdb: bool = False
    createrole: bool = False
    replication: bool = False
    bypassrls: bool = False
    inherit: bool = True


@dataclass(frozen=True)
class ClusterState:
    """What provisioning finds: the administrator, the database, and the layout's roles and schemas that exist."""

    admin: str
    database: str
    roles: Mapping[str, RoleState]
    schema_owners: Mapping[str, str]


@dataclass(frozen=True)
class Plan:
    statements: list[str]
    """Run in one transaction, in order."""
    done: list[str]
    """What they do, for the log (never a password)."""
    hand_over: list[tuple[str, str]]
    """(schema, role): existing schemas the role takes over with everything in them."""


def _role_steps(name: str, login: bool, found: RoleState | None, password: str | None) -> tuple[list[str], list[str]]:
    statements: list[str] = []
    done: list[str] = []
    if found is None:
        # Defaults are NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT.
        statements.append(f"CREATE ROLE {quote_ident(name)} {'LOGIN' if login else 'NOLOGIN'}")
        done.append(f"created role {name}")
    else:
        # Only what differs: an administrator that is not a superuser may not even name SUPERUSER or REPLICATION.
        wanted = RoleState(login=login)
        keywords = {
            "login": "LOGIN" if login else "NOLOGIN",
            "superuser": "NOSUPERUSER",
            "createdb": "NOCREATEDB",
            "createrole": "NOCREATEROLE",
            "replication": "NOREPLICATION",
            "bypassrls": "NOBYPASSRLS",
            "inherit": "INHERIT",
        }
        changes = [word for field, word in keywords.items() if getattr(found, field) != getattr(wanted, field)]
        if changes:
            statements.append(f"ALTER ROLE {quote_ident(name)} {' '.join(changes)}")
            done.append(f"role {name}: {' '.join(changes)}")
    if password is not None:
        statements.append(f"ALTER ROLE {quote_ident(name)} PASSWORD {_literal(scram_sha_256(password))}")
        done.append(f"role {name}: password set")
    return statements, done


def plan(layout: Layout, state: ClusterState, passwords: Mapping[str, str | None]) -> Plan:
    """The statements that bring the cluster to `layout`: only what is missing or wrong, plus idempotent grants."""
    if state.admin in layout.roles():
        raise ProvisionError(f"the administrator {state.admin} cannot also be a service's role")
    statements: list[str] = []
    done: list[str] = []
    for service in LOGIN_ROLES:
        name = layout.role(service)
        more, said = _role_steps(name, True, state.roles.get(name), passwords.get(service))
        statements += more
        done += said
    for service in READ_CONTRACTS:
        name = layout.readers(service)
        more, said = _role_steps(name, False, state.roles.get(name), None)
        statements += more
        done += said
    for reader, contracts in READERS.items():
        role = quote_ident(layout.role(reader))
        statements += [f"GRANT {quote_ident(layout.readers(c))} TO {role}" for c in contracts]
        # Belt and braces: a reader's sessions are read-only unless it says otherwise.
        statements.append(f"ALTER ROLE {role} SET default_transaction_read_only = on")
    logins = ", ".join(quote_ident(layout.role(s)) for s in LOGIN_ROLES)
    statements.append(f"GRANT CONNECT ON DATABASE {quote_ident(state.database)} TO {logins}")
    statements.append(  # PostgreSQL 15+ made this the default; older servers let every role create in `public`
        "DO $$ BEGIN IF to_regnamespace('public') IS NOT NULL THEN REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
        " END IF; END $$"
    )
    hand_over: list[tuple[str, str]] = []
    for service in OWNERS:
        owner = layout.role(service)
        schemas = [layout.schema(service)] + ([layout.read_schema(service)] if service in READ_CONTRACTS else [])
        for schema in schemas:
            current = state.schema_owners.get(schema)
            if current is None:
                statements.append(f"CREATE SCHEMA {quote_ident(schema)} AUTHORIZATION {quote_ident(owner)}")
                done.append(f"created schema {schema} owned by {owner}")
            elif current != owner:
                # Made before roles existed (an administrator ran the migrations): the role takes it over.
                statements.append(f"ALTER SCHEMA {quote_ident(schema)} OWNER TO {quote_ident(owner)}")
                statements.append(f"REVOKE ALL ON SCHEMA {quote_ident(schema)} FROM PUBLIC")
                hand_over.append((schema, owner))
                done.append(f"schema {schema} handed over from {current} to {owner}")
    return Plan(statements, done, hand_over)


_STATE = """
SELECT session_user AS admin, current_database() AS database,
       (SELECT coalesce(jsonb_object_agg(rolname, jsonb_build_object(
                 'login', rolcanlogin, 'superuser', rolsuper, 'createdb', rolcreatedb, 'createrole', rolcreaterole,
                 'replication', rolreplication, 'bypassrls', rolbypassrls, 'inherit', rolinherit)), '{}')::text
          FROM pg_roles WHERE rolname = ANY($1::text[])) AS roles,
       (SELECT coalesce(jsonb_object_agg(nspname, pg_get_userbyid(nspowner)), '{}')::text
          FROM pg_namespace WHERE nspname = ANY($2::text[])) AS schemas
"""


async def cluster_state(conn: asyncpg.Connection, layout: Layout) -> ClusterState:
    row = await conn.fetchrow(_STATE, layout.roles(), layout.all_schemas())
    roles = {name: RoleState(**attributes) for name, attributes in json.loads(row["roles"]).items()}
    return ClusterState(row["admin"], row["database"], roles, json.loads(row["schemas"]))


_HAND_OVER = """
SELECT format('ALTER %s %s OWNER TO %I', kind, name, $2::text) AS statement
  FROM (
    SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                          WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS kind,
           c.oid::regclass::text AS name, c.relowner AS owner
      FROM pg_class c
     WHERE c.relnamespace = to_regnamespace($1)
       AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S', 'c')
       -- a sequence owned by a column (serial, identity) follows its table
       AND (c.relkind <> 'S' OR NOT EXISTS (
               SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
    UNION ALL
    SELECT 'ROUTINE', p.oid::regprocedure::text, p.proowner FROM pg_proc p WHERE p.pronamespace = to_regnamespace($1)
    UNION ALL
    SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text, t.typowner
      FROM pg_type t
     WHERE t.typnamespace = to_regnamespace($1) AND t.typtype IN ('e', 'd', 'r', 'm')
  ) objects
 WHERE owner <> to_regrole($2)::oid
"""

_LEFT_OVER = """
SELECT count(*) FROM (
    SELECT relowner AS owner FROM pg_class WHERE relnamespace = to_regnamespace($1)
    UNION ALL SELECT proowner FROM pg_proc WHERE pronamespace = to_regnamespace($1)
    UNION ALL SELECT typowner FROM pg_type WHERE typnamespace = to_regnamespace($1)
) objects WHERE owner <> to_regrole($2)::oid
"""


async def _hand_over(conn: asyncpg.Connection, schema: str, owner: str) -> int:
    """Give `owner` everything in `schema` (indexes, row types and column sequences follow their tables)."""
    moved = await conn.fetch(_HAND_OVER, schema, owner)
    if moved:
        await conn.execute(";\n".join(row["statement"] for row in moved))
    left = await conn.fetchval(_LEFT_OVER, schema, owner)
    if left:
        raise ProvisionError(f"schema {schema}: {left} objects of a kind not handed over automatically to {owner}")
    return len(moved)


_ONE_PROVISIONER_AT_A_TIME = "SELECT pg_advisory_xact_lock(hashtext('provision'))"
"""Provisioning and deprovisioning take turns on the whole cluster, whatever the layout's prefix: layouts share
catalog rows (the database's ACL, role memberships), and two concurrent GRANT/REVOKEs of one row fail with "tuple
concurrently updated"."""


async def provision(
    conn: asyncpg.Connection, layout: Layout, passwords: Mapping[str, str | None] | None = None
) -> list[str]:
    """Create (or correct) every role and schema of `layout`, as the administrator connected by `conn`; returns
    what was done (never a password).

    `passwords`: service → password of its role; a service missing or None keeps its role's password as it is
    (a new role then has none: only a server that trusts the connection lets it in, as on loopback in development).
    """
    async with conn.transaction():
        await conn.execute(_ONE_PROVISIONER_AT_A_TIME)
        steps = plan(layout, await cluster_state(conn, layout), passwords or {})
        await conn.execute(";\n".join(steps.statements))
        done = list(steps.done)
        for schema, owner in steps.hand_over:
            done.append(f"schema {schema}: {await _hand_over(conn, schema, owner)} objects handed over to {owner}")
    return done


async def deprovision(conn: asyncpg.Connection, layout: Layout) -> None:
    """Drop every schema and role of `layout` (tests and throw-away systems; roles are cluster-wide)."""
    async with conn.transaction():
        await conn.execute(_ONE_PROVISIONER_AT_A_TIME)
        existing = await conn.fetchval(
            "SELECT array_agg(rolname::text) FROM pg_roles WHERE rolname = ANY($1::text[])", layout.roles()
        )
        statements = [f"DROP SCHEMA IF EXISTS {', '.join(quote_ident(s) for s in layout.all_schemas())} CASCADE"]
        if existing:
            names = ", ".join(quote_ident(r) for r in existing)
            # DROP OWNED also revokes what they were granted (CONNECT) and their default privileges.
            statements += [f"DROP OWNED BY {names}", f"DROP ROLE {names}"]
        await conn.execute(";\n".join(statements))


_PASSWORD = re.compile(r"^[\x21-\x7e]{16,}$")


class ProvisionSettings(BaseSettings):
    """`python -m shared.provision`: the only process given an administrator's DSN."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    database_admin_url: SecretStr
    """A superuser (or a role that may create roles and schemas in the database); used by this job only."""
    db_prefix: str = Field(default="", pattern=r"^([a-z_][a-z0-9_]*)?$")
    """Prefix of every schema and role name; the services' DB_SCHEMA (and the gateway's AGGREGATOR_SCHEMA,
    MAPPING_SCHEMA) must carry the same prefix."""
    aggregator_db_password: SecretStr | None = None
    publisher_db_password: SecretStr | None = None
    mapping_db_password: SecretStr | None = None
    gateway_db_password: SecretStr | None = None
    """Each role's password (the same one is in that service's DATABASE_URL). Unset: left as it is."""

    @field_validator("aggregator_db_password", "publisher_db_password", "mapping_db_password", "gateway_db_password")
    @classmethod
    def _strong(cls, password: SecretStr | None) -> SecretStr | None:
        if password is not None and not _PASSWORD.match(password.get_secret_value()):
            raise ValueError("must be at least 16 printable ASCII characters without spaces (URL-safe ones for URLs)")
        return password

    def passwords(self) -> dict[str, str | None]:
        return {
            service: secret.get_secret_value() if (secret := getattr(self, f"{service}_db_password")) else None
            for service in LOGIN_ROLES
        }


async def _run(settings: ProvisionSettings) -> list[str]:
    conn = await asyncpg.connect(settings.database_admin_url.get_secret_value())
    try:
        return await provision(conn, Layout(settings.db_prefix), settings.passwords())
    finally:
        await conn.close()


def main() -> None:
    """Provision from the environment (ProvisionSettings); prints what it did, never a password or a DSN."""
    settings = load_settings(ProvisionSettings)
    for line in asyncio.run(_run(settings)) or ["nothing to do"]:
        print(f"provision | {line}", flush=True)


if __name__ == "__main__":
    main()
