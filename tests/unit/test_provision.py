"""Provisioning plans, SCRAM verifiers, migration placeholders and role DSNs, without a database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys

import pytest

from shared import db
from shared.provision import (
    LOGIN_ROLES,
    OWNERS,
    ClusterState,
    Layout,
    ProvisionError,
    ProvisionSettings,
    RoleState,
    plan,
    scram_sha_256,
)

LAYOUT = Layout("p_")


def state(roles: dict[str, RoleState] | None = None, schemas: dict[str, str] | None = None) -> ClusterState:
    return ClusterState("admin", "procore", roles or {}, schemas or {})


def provisioned_state() -> ClusterState:
    roles = {LAYOUT.role(s): RoleState(login=True) for s in LOGIN_ROLES}
    roles |= {LAYOUT.readers(s): RoleState(login=False) for s in ("aggregator", "mapping")}
    schemas = {LAYOUT.schema(s): LAYOUT.role(s) for s in OWNERS}
    schemas |= {LAYOUT.read_schema(s): LAYOUT.role(s) for s in ("aggregator", "mapping")}
    return state(roles, schemas)


def test_scram_verifier_passes_the_servers_check_of_rfc_7677s_exchange() -> None:
    """RFC 7677's example (user "user", password "pencil"): a server holding our verifier accepts the client's proof
    and answers with the RFC's server signature."""
    verifier = scram_sha_256("pencil", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), iterations=4096)
    method, iterations_salt, keys = verifier.split("$")
    assert (method, iterations_salt) == ("SCRAM-SHA-256", "4096:W22ZaJ0SNY7soEsUEjb6gQ==")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}".encode()
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, hmac.new(stored_key, auth, "sha256").digest(), strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert (
        base64.b64encode(hmac.new(server_key, auth, "sha256").digest())
        == b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    )


def test_a_fresh_cluster_gets_every_role_and_schema_and_no_password_in_any_statement() -> None:
    steps = plan(LAYOUT, state(), {"gateway": "gateway-password-0123456789"})
    sql = ";\n".join(steps.statements)
    for service in LOGIN_ROLES:
        assert f'CREATE ROLE "p_{service}" LOGIN' in sql
    assert 'CREATE ROLE "p_aggregator_readers" NOLOGIN' in sql
    assert 'CREATE ROLE "p_mapping_readers" NOLOGIN' in sql
    assert 'GRANT "p_aggregator_readers" TO "p_gateway"' in sql
    assert 'GRANT "p_mapping_readers" TO "p_gateway"' in sql
    assert 'CREATE SCHEMA "p_aggregator_read" AUTHORIZATION "p_aggregator"' in sql
    assert 'CREATE SCHEMA "p_mapping_read" AUTHORIZATION "p_mapping"' in sql
    assert 'CREATE SCHEMA "p_publisher" AUTHORIZATION "p_publisher"' in sql
    assert "p_publisher_read" not in sql
    assert 'p_gateway" AUTHORIZATION' not in sql
    assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in sql
    assert 'ALTER ROLE "p_gateway" PASSWORD \'SCRAM-SHA-256$4096:' in sql
    assert "gateway-password-0123456789" not in sql
    assert "gateway-password" not in " ".join(steps.done)
    assert "SUPERUSER" not in sql.replace("NOSUPERUSER", "")


def test_a_provisioned_cluster_needs_nothing_but_the_idempotent_grants() -> None:
    steps = plan(LAYOUT, provisioned_state(), {})
    assert steps.done == []
    assert steps.hand_over == []
    assert not [s for s in steps.statements if s.startswith(("CREATE", "ALTER SCHEMA")) or "PASSWORD" in s]


def test_a_role_with_powers_loses_exactly_those() -> None:
    current = provisioned_state()
    roles = dict(current.roles)
    roles["p_mapping"] = RoleState(login=True, createdb=True, superuser=True)
    roles["p_mapping_readers"] = RoleState(login=True)
    steps = plan(LAYOUT, ClusterState("admin", "procore", roles, current.schema_owners), {})
    assert 'ALTER ROLE "p_mapping" NOSUPERUSER NOCREATEDB' in steps.statements
    assert 'ALTER ROLE "p_mapping_readers" NOLOGIN' in steps.statements


def test_schemas_of_someone_else_are_handed_over() -> None:
    current = provisioned_state()
    owners = {**current.schema_owners, "p_aggregator": "postgres"}
    steps = plan(LAYOUT, ClusterState("admin", "procore", current.roles, owners), {})
    assert 'ALTER SCHEMA "p_aggregator" OWNER TO "p_aggregator"' in steps.statements
    assert steps.hand_over == [("p_aggregator", "p_aggregator")]


def test_the_administrator_cannot_be_a_services_role() -> None:
    with pytest.raises(ProvisionError, match="administrator"):
        plan(Layout(""), ClusterState("gateway", "procore", {}, {}), {})


@pytest.mark.parametrize("prefix", ["Caps_", "1x_", "a-b_", "x" * 50])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Layout(prefix)


def test_layout_names() -> None:
    assert LAYOUT.schemas == {"aggregator": "p_aggregator", "publisher": "p_publisher", "mapping": "p_mapping"}
    assert (LAYOUT.read_schema("mapping"), LAYOUT.readers("mapping")) == ("p_mapping_read", "p_mapping_readers")
    for missing in (lambda: LAYOUT.schema("gateway"), lambda: LAYOUT.read_schema("publisher")):
        with pytest.raises(KeyError):
            missing()


def test_placeholders_expand_to_quoted_identifiers_and_nothing_else() -> None:
    sql = "GRANT SELECT ON ${read_schema}.v TO ${readers}; SELECT $1, $$text$$, '${x' FROM ${schema}.t"
    assert db.expand(sql, db.placeholders("agg")) == (
        'GRANT SELECT ON "agg_read".v TO "agg_readers"; SELECT $1, $$text$$, \'${x\' FROM "agg".t'
    )
    with pytest.raises(db.MigrationError, match=r"unknown placeholder \$\{owner\}"):
        db.expand("ALTER TABLE t OWNER TO ${owner}", db.placeholders("agg"))


@pytest.mark.parametrize("service", OWNERS)
def test_every_migration_uses_known_placeholders_only(service: str) -> None:
    for _, name, sql in db.migration_files(f"services.{service}.migrations"):
        db.expand(sql, db.placeholders(service), name)


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://postgres:pw@db:5432/procore", "postgresql://gateway:s%2Fcr%40t@db:5432/procore"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://gateway:s%2Fcr%40t@127.0.0.1:5432/test"),
        (
            "postgresql://postgres@/postgres?host=/tmp/pg&port=5",
            "postgresql://gateway:s%2Fcr%40t@/postgres?host=/tmp/pg&port=5",
        ),
    ],
)
def test_role_dsns_keep_the_server_and_database(dsn: str, expected: str) -> None:
    assert db.with_role(dsn, "gateway", "s/cr@t") == expected
    assert db.with_role(dsn, "gateway") == expected.replace(":s%2Fcr%40t", "")


def test_provision_settings_refuse_weak_passwords_and_never_show_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_ADMIN_URL", "postgresql://postgres:admin-secret@db/procore")
    monkeypatch.setenv("GATEWAY_DB_PASSWORD", "short")
    with pytest.raises(ValueError, match="at least 16"):
        ProvisionSettings()
    monkeypatch.setenv("GATEWAY_DB_PASSWORD", "a-long-enough-gateway-password")
    settings = ProvisionSettings()
    assert settings.passwords() == {
        "aggregator": None,
        "publisher": None,
        "mapping": None,
        "gateway": "a-long-enough-gateway-password",
    }
    assert "admin-secret" not in repr(settings)
    assert "gateway-password" not in repr(settings)


def test_the_provisioning_job_names_its_missing_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shared.provision"], env={"PATH": ""}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "setting DATABASE_ADMIN_URL is required but not set" in result.stderr
