"""Checks docker-compose.yml, deploy/Dockerfile and deploy/otel-collector.yaml without a Docker engine.

`docker compose config` cannot run here (no engine, no compose plugin), so this module does what
matters of it: Compose-style variable interpolation, validation against the official Compose
Specification JSON schema, and the project's own rules (healthchecks, dependencies, settings).

The schema, deploy/compose-spec.schema.json, is copied byte for byte from the PyPI package
check-jsonschema 0.39.0 (check_jsonschema/builtin_schemas/vendor/compose-spec.json), which vendors
the compose-spec project's schema (Apache-2.0). Its sha256 is pinned below so that an edit shows up.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from shared.kafka_acls import acls, principals, provisioned_topics
from shared.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "deploy" / "compose-spec.schema.json"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OTEL_CONFIG = ROOT / "deploy" / "otel-collector.yaml"

KAFKA_PASSWORDS = {
    f"KAFKA_{name}_PASSWORD": f"{name.lower()}-test-password-0123456789"
    for name in ("BROKER", "ADMIN", "AGGREGATOR", "PUBLISHER", "MAPPING", "GATEWAY", "MOBICLOCKS_CORE")
}
DB_PASSWORDS = {
    "AGGREGATOR_DB_PASSWORD": "aggregator-test-password",
    "PUBLISHER_DB_PASSWORD": "publisher-test-password",
    "MAPPING_DB_PASSWORD": "mapping-test-password",
    "GATEWAY_DB_PASSWORD": "gateway-test-password",
}
REQUIRED_VARS = {
    "TOKEN_ENCRYPTION_KEY": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
    "INTERNAL_API_TOKEN": "internal-test-token-of-32-characters-or-more",
    "JWKS_URL": "https://mobiclocks.example/.well-known/jwks.json",
    "JWT_ISSUER": "https://mobiclocks.example",
    "JWT_AUDIENCE": "procore-publishing",
    **KAFKA_PASSWORDS,
    **DB_PASSWORDS,
}

APP_SERVICES = {"aggregator": 8081, "publisher": 8082, "mapping": 8083, "gateway": 8000}
MAPPING_INTERNAL_PORT = 8093
JOBS = {"kafka-setup", "db-provision", "preflight", "demo-seed"}
"""One-shot containers: they run to completion (no healthcheck, tried again only when they fail); others wait for
them to succeed."""
COMMON_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_CREATE_TOPICS",
    "KAFKA_TOPIC_PARTITIONS",
    "DATABASE_URL",
    "TOPIC_PREFIX",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "LOG_LEVEL",
    "HTTP_HOST",
    "HTTP_PORT",
}
PROCORE_ENV = {"PROCORE_BASE_URL", "PROCORE_LOGIN_URL", "PROCORE_CLIENT_ID", "PROCORE_CLIENT_SECRET"}
EXTRA_ENV: dict[str, set[str]] = {
    "aggregator": set(),
    "publisher": PROCORE_ENV | {"PROCORE_TOKENS_URL", "INTERNAL_API_TOKEN"},
    "mapping": PROCORE_ENV
    | {"TOKEN_ENCRYPTION_KEYS", "INTERNAL_API_TOKEN", "INTERNAL_HTTP_HOST", "INTERNAL_HTTP_PORT"},
    "gateway": {
        "ENVIRONMENT",
        "JWKS_URL",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "DEV_LOGIN",
        "MAPPING_URL",
        "INTERNAL_API_TOKEN",
    },
}
EXTRA_DEPENDENCIES: dict[str, set[str]] = {
    "aggregator": set(),
    "publisher": {"procore-sandbox", "mapping"},
    "mapping": {"procore-sandbox"},
    "gateway": {"aggregator", "mapping"},
}


# --------------------------------------------------------------------------- interpolation


class InterpolationError(ValueError):
    """A malformed `$` expression."""


class MissingVariableError(InterpolationError):
    """A `${VAR:?msg}` / `${VAR?msg}` whose variable is missing."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"required variable {variable} is missing a value: {message}")
        self.variable = variable


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def _closing_brace(text: str, open_at: int) -> int:
    """Index of the `}` closing the `{` at `open_at`, allowing nested `${...}`."""
    depth = 0
    i = open_at
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "{" and i == open_at:
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"unterminated ${{ in {text!r}")


def _expand_braced(body: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(body)
    if match is None:
        raise InterpolationError(f"invalid variable name in ${{{body}}}")
    name, rest = match.group(), body[match.end() :]
    if not rest:
        return env.get(name, "")
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise InterpolationError(f"invalid interpolation format ${{{body}}}")
    arg = rest[len(operator) :]
    is_set = name in env
    has_value = bool(env.get(name))
    present = has_value if operator.startswith(":") else is_set
    kind = operator[-1]
    if kind == "-":
        return env[name] if present else interpolate_string(arg, env)
    if kind == "?":
        if not present:
            raise MissingVariableError(name, interpolate_string(arg, env))
        return env[name]
    return interpolate_string(arg, env) if present else ""  # "+": alternative value


def interpolate_string(text: str, env: Mapping[str, str]) -> str:
    """Interpolate one string the way Docker Compose does.

    Supports `$$` (a literal `$`), `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
    `${VAR:?message}`, `${VAR?message}`, `${VAR:+alt}`, `${VAR+alt}`, and nested expressions in
    the default/alternative/message part (evaluated only when used). An unset plain `${VAR}` is
    the empty string, as in Compose (which also warns).
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            end = _closing_brace(text, i + 1)
            out.append(_expand_braced(text[i + 2 : end], env))
            i = end + 1
        else:
            match = _NAME.match(text, i + 1)
            if match is None:
                raise InterpolationError(f"invalid interpolation format at {text[i:]!r}")
            out.append(env.get(match.group(), ""))
            i = match.end()
    return "".join(out)


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value (not mapping keys) of a loaded YAML document."""
    if isinstance(value, str):
        return interpolate_string(value, env)
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    return value


def variable_references(text: str) -> Iterator[tuple[str, str]]:
    """(name, operator) of every `$` reference in `text`, nested ones included; `$$` skipped."""
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 1)
            body = text[i + 2 : end]
            match = _NAME.match(body)
            if match is None:
                raise InterpolationError(f"invalid variable name in ${{{body}}}")
            rest = body[match.end() :]
            operator = next((op for op in _OPERATORS if rest.startswith(op)), "")
            yield match.group(), operator
            yield from variable_references(rest[len(operator) :])
            i = end + 1
        elif text[i] == "$" and (match := _NAME.match(text, i + 1)):
            yield match.group(), ""
            i = match.end()
        else:
            i += 1


# --------------------------------------------------------------------------- helpers


def _raw_compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _all_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _all_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_strings(item)


def _environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        result: dict[str, str | None] = {}
        for entry in env:
            name, sep, val = str(entry).partition("=")
            result[name] = val if sep else None
        return result
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def _valued(env: Mapping[str, str | None]) -> dict[str, str]:
    """The variables given a value (a bare name passes the host's own through, unknown here)."""
    return {name: value for name, value in env.items() if value is not None}


def _depends_on(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: {"condition": "service_started"} for name in deps}
    return dict(deps)


def _published_ports(service: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(host_ip, host_port, protocol) of every published port of a service."""
    published: list[tuple[str, str, str]] = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published") is not None:
                published.append((str(port.get("host_ip", "")), str(port["published"]), port.get("protocol", "tcp")))
            continue
        spec, _, protocol = str(port).partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            published.append((parts[0], parts[1], protocol or "tcp"))
        elif len(parts) == 2:
            published.append(("", parts[0], protocol or "tcp"))
    return published


def _named_volume_sources(service: Mapping[str, Any]) -> Iterator[str]:
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type", "volume") == "volume" and volume.get("source"):
                yield volume["source"]
            continue
        source = str(volume).split(":", 1)[0]
        if ":" in str(volume) and not source.startswith((".", "/", "~", "$")):
            yield source


def _bind_sources(service: Mapping[str, Any]) -> Iterator[str]:
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                yield volume["source"]
            continue
        source = str(volume).split(":", 1)[0]
        if source.startswith((".", "/")):
            yield source


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    resolved = interpolate(_raw_compose(), REQUIRED_VARS)
    assert isinstance(resolved, dict)
    return resolved


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = compose["services"]
    assert isinstance(result, dict)
    return result


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


# --------------------------------------------------------------------------- interpolation tests


@pytest.mark.parametrize(
    ("template", "env", "expected"),
    [
        ("plain", {}, "plain"),
        ("${A}", {"A": "x"}, "x"),
        ("$A/b", {"A": "x"}, "x/b"),
        ("${A}", {}, ""),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A:-d}", {"A": "x"}, "x"),
        ("${A-d}", {"A": ""}, ""),
        ("${A-d}", {}, "d"),
        ("${A:-}", {}, ""),
        ("${A:--Xmx1g}", {}, "-Xmx1g"),
        ("${A:?boom}", {"A": "x"}, "x"),
        ("${A?boom}", {"A": ""}, ""),
        ("${A:+alt}", {"A": "x"}, "alt"),
        ("${A:+alt}", {"A": ""}, ""),
        ("${A+alt}", {"A": ""}, "alt"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("$$A $$", {}, "$A $"),
        ("${A:-${B:-z}}", {}, "z"),
        ("${A:-${B:-z}}", {"B": "b"}, "b"),
        ("${A:-${B:?unused}}", {"A": "a"}, "a"),
        ("pre-${A:-x}-${B:-y}-post", {"B": "b"}, "pre-x-b-post"),
        ("${A:-http://h:1/p}", {}, "http://h:1/p"),
    ],
)
def test_interpolate_string(template: str, env: dict[str, str], expected: str) -> None:
    assert interpolate_string(template, env) == expected


@pytest.mark.parametrize("template", ["${A", "${}", "${1A}", "${A:x}", "a $ b", "trailing $", "${A!}"])
def test_interpolate_rejects_malformed(template: str) -> None:
    with pytest.raises(InterpolationError):
        interpolate_string(template, {})


@pytest.mark.parametrize("template", ["${A:?set A please}", "${A?set A please}"])
def test_interpolate_missing_required_names_the_variable(template: str) -> None:
    with pytest.raises(MissingVariableError, match=r"\bA\b.*set A please") as info:
        interpolate_string(template, {})
    assert info.value.variable == "A"


def test_interpolate_empty_value_fails_colon_form_only() -> None:
    with pytest.raises(MissingVariableError):
        interpolate_string("${A:?empty}", {"A": ""})
    assert interpolate_string("${A?unset only}", {"A": ""}) == ""


@pytest.mark.parametrize("missing", sorted(REQUIRED_VARS))
def test_compose_without_a_required_secret_fails_naming_it(missing: str) -> None:
    env = {name: value for name, value in REQUIRED_VARS.items() if name != missing}
    with pytest.raises(MissingVariableError) as info:
        interpolate(_raw_compose(), env)
    assert info.value.variable == missing
    assert missing in str(info.value)


def test_compose_interpolates_fully_with_required_vars(compose: dict[str, Any]) -> None:
    # Only `$${VAR}` escapes (expanded later by a shell inside the container) may leave "${".
    escaped = {interpolate_string(text, REQUIRED_VARS) for text in _all_strings(_raw_compose()) if "$$" in text}
    leftovers = {text for text in _all_strings(compose) if "${" in text}
    assert leftovers <= escaped
    mapping = _environment(compose["services"]["mapping"])
    gateway = _environment(compose["services"]["gateway"])
    assert mapping["TOKEN_ENCRYPTION_KEYS"] == REQUIRED_VARS["TOKEN_ENCRYPTION_KEY"]
    assert gateway["JWKS_URL"] == REQUIRED_VARS["JWKS_URL"]
    assert (gateway["ENVIRONMENT"], gateway["DEV_LOGIN"]) == ("production", "false")
    assert "JWT_SECRET" not in gateway  # HS256 is for development only
    assert _environment(compose["services"]["aggregator"])["DATABASE_URL"] == (
        "postgresql://aggregator:aggregator-test-password@postgres:5432/procore"
    )


def test_compose_overrides_are_applied() -> None:
    env = {**REQUIRED_VARS, "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "db", "GATEWAY_PORT": "9000"}
    resolved = interpolate(_raw_compose(), env)
    services = resolved["services"]
    assert _environment(services["publisher"])["DATABASE_URL"] == (
        "postgresql://publisher:publisher-test-password@postgres:5432/db"
    )
    assert _environment(services["db-provision"])["DATABASE_ADMIN_URL"] == "postgresql://postgres:pw@postgres:5432/db"
    assert _environment(services["postgres"])["POSTGRES_PASSWORD"] == "pw"
    assert _published_ports(services["gateway"]) == [("127.0.0.1", "9000", "tcp")]


def test_token_encryption_keys_alone_suffice_and_the_older_key_joins_them() -> None:
    new, old = "bmV3LWtleS1vZi10aGlydHktdHdvLWJ5dGVzLWxvbmc=", REQUIRED_VARS["TOKEN_ENCRYPTION_KEY"]
    only_keys = {k: v for k, v in REQUIRED_VARS.items() if k != "TOKEN_ENCRYPTION_KEY"} | {"TOKEN_ENCRYPTION_KEYS": new}
    mapping = _environment(interpolate(_raw_compose(), only_keys)["services"]["mapping"])
    assert (mapping["TOKEN_ENCRYPTION_KEYS"], mapping["TOKEN_ENCRYPTION_KEY"]) == (new, "")
    # Rotating: the new key first, the old one still decrypting until rotate-keys has run.
    both = _environment(interpolate(_raw_compose(), {**only_keys, "TOKEN_ENCRYPTION_KEY": old})["services"]["mapping"])
    assert (both["TOKEN_ENCRYPTION_KEYS"], both["TOKEN_ENCRYPTION_KEY"]) == (new, old)


def test_every_variable_has_a_default_or_is_required() -> None:
    refs = [ref for text in _all_strings(_raw_compose()) for ref in variable_references(text)]
    assert refs, "expected some ${VAR} references"
    bare = sorted({name for name, operator in refs if operator not in (":-", ":?")})
    assert bare == [], f"variables without ${{VAR:-default}} or ${{VAR:?message}}: {bare}"
    required = sorted({name for name, operator in refs if operator == ":?"})
    assert required == sorted(REQUIRED_VARS)


# --------------------------------------------------------------------------- schema tests


def test_vendored_schema_is_the_recorded_copy() -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_matches_compose_spec_schema(compose: dict[str, Any], validator: Draft202012Validator) -> None:
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_rejects_known_mistakes(compose: dict[str, Any], validator: Draft202012Validator) -> None:
    """The schema is strict enough to catch typos, so passing it means something."""
    typo = copy.deepcopy(compose)
    typo["services"]["gateway"]["healthchek"] = typo["services"]["gateway"].pop("healthcheck")
    assert not validator.is_valid(typo)

    bad_condition = copy.deepcopy(compose)
    bad_condition["services"]["gateway"]["depends_on"]["kafka"]["condition"] = "healthy"
    assert not validator.is_valid(bad_condition)


def test_no_obsolete_version_key() -> None:
    assert "version" not in _raw_compose()


# --------------------------------------------------------------------------- project rules


def test_every_service_has_image_or_build(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "postgres", "procore-sandbox", "otel-collector", "jaeger"} | set(APP_SERVICES) <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name


def test_every_service_has_an_enabled_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in JOBS:
            assert "healthcheck" not in service, f"{name} is a one-shot job: others wait for it to complete"
            continue
        check = service.get("healthcheck")
        assert isinstance(check, dict), f"{name} has no healthcheck"
        assert not check.get("disable"), name
        test = check.get("test")
        assert test, name
        assert test != ["NONE"], name
        if isinstance(test, list):
            assert test[0] in ("CMD", "CMD-SHELL"), name


def test_every_service_restarts(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name == "preflight":  # a bad secret stays bad: once, with its message
            assert service.get("restart") == "no", name
        elif name in JOBS:  # tried again when it fails, never once it succeeded
            assert re.fullmatch(r"on-failure(:\d+)?", service.get("restart", "")), name
            assert "healthcheck" not in service, name
        else:
            assert service.get("restart") == "unless-stopped", name


def test_depends_on_waits_for_healthy_defined_services(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, options in _depends_on(service).items():
            assert target in services, f"{name} depends on undefined {target}"
            if target in JOBS:
                assert options.get("condition") == "service_completed_successfully", f"{name} -> {target}"
                continue
            assert options.get("condition") == "service_healthy", f"{name} -> {target}"
            assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"


def test_dependency_graph_has_no_cycle(services: dict[str, dict[str, Any]]) -> None:
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "visiting", f"dependency cycle: {' -> '.join((*path, name))}"
        state[name] = "visiting"
        for target in _depends_on(services[name]):
            visit(target, (*path, name))
        state[name] = "done"

    for name in services:
        visit(name, ())


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_service_command_environment_and_dependencies(services: dict[str, dict[str, Any]], name: str) -> None:
    service = services[name]
    port = APP_SERVICES[name]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert "build" not in service, "db-provision builds it"
    assert service["image"] == "procore-publishing:local", "db-provision builds it"
    assert service["pull_policy"] == "never"

    env = _environment(service)
    missing = (COMMON_ENV | EXTRA_ENV[name]) - set(env)
    assert not missing, f"{name} lacks {sorted(missing)}"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["OTEL_SERVICE_NAME"] == name
    assert env["HTTP_HOST"] == "0.0.0.0"
    assert env["HTTP_PORT"] == str(port)
    assert env["LOG_LEVEL"] == "INFO"
    assert env["TOPIC_PREFIX"] == ""
    if EXTRA_ENV[name] >= PROCORE_ENV:
        assert env["PROCORE_BASE_URL"] == "http://procore-sandbox:8090"

    probe = " ".join(service["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/health" in probe

    deps = set(_depends_on(service))
    assert deps == {"kafka", "kafka-setup", "postgres", "db-provision", "preflight"} | EXTRA_DEPENDENCIES[name]


def test_procore_sandbox(services: dict[str, dict[str, Any]]) -> None:
    sandbox = services["procore-sandbox"]
    assert sandbox["command"] == ["python", "-m", "sandbox.procore", "--host", "0.0.0.0", "--port", "8090"]
    assert "http://127.0.0.1:8090/_sandbox/health" in " ".join(sandbox["healthcheck"]["test"])


KAFKA_DIR = ROOT / "deploy" / "kafka"
SCRAM_ONLY = "SCRAM-SHA-512"


def _properties(path: Path) -> dict[str, str]:
    found = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def _listeners(value: str) -> dict[str, str]:
    """listener name → host:port."""
    return dict(item.split("://", 1) for item in value.split(","))


def test_kafka_is_single_node_kraft_with_scram_and_acls(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:(3\.(9|\d{2,})|4\.\d+)\.\d+", kafka["image"]), kafka["image"]
    assert kafka["command"] == ["/bin/bash", "/etc/kafka/compose/start.sh"]
    assert "./deploy/kafka:/etc/kafka/compose:ro" in kafka["volumes"]
    props = _properties(KAFKA_DIR / "server.properties")
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == f"{props['node.id']}@127.0.0.1:9093"
    listeners, advertised = _listeners(props["listeners"]), _listeners(props["advertised.listeners"])
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    assert set(listeners) == set(protocols) == {"BROKER", "CONTROLLER"}
    # Nothing unauthenticated: every listener speaks SASL; clients get SCRAM only, the node talks to itself on loopback.
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}
    assert props["listener.name.broker.sasl.enabled.mechanisms"] == SCRAM_ONLY
    assert props["sasl.mechanism.inter.broker.protocol"] == SCRAM_ONLY
    assert listeners["CONTROLLER"].startswith("127.0.0.1:")
    assert props["controller.listener.names"] == "CONTROLLER"
    assert advertised == {"BROKER": "kafka:9092"}
    assert props["inter.broker.listener.name"] == "BROKER"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["auto.create.topics.enable"] == "false"
    assert set(props["super.users"].split(";")) == {"User:kafka", "User:admin"}
    assert props["offsets.topic.replication.factor"] == "1"
    env = _environment(kafka)
    assert env["KAFKA_BROKER_PASSWORD"] == REQUIRED_VARS["KAFKA_BROKER_PASSWORD"]
    assert env["KAFKA_ADMIN_PASSWORD"] == REQUIRED_VARS["KAFKA_ADMIN_PASSWORD"]
    probe = " ".join(kafka["healthcheck"]["test"])
    assert "localhost:9092" in probe
    assert "--command-config /opt/kafka/config/compose/client.properties" in probe
    start = (KAFKA_DIR / "start.sh").read_text(encoding="utf-8")
    assert 'client="$config_dir/client.properties"' in start
    assert "config_dir=/opt/kafka/config/compose" in start
    assert start.count("--add-scram") == 2
    assert 'name=\\"admin\\"' in start
    assert 'name=\\"kafka\\"' in start


@pytest.mark.parametrize("script", ["start.sh", "provision.sh"])
def test_kafka_scripts_are_valid_bash(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(KAFKA_DIR / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_service_logs_in_as_its_own_principal(services: dict[str, dict[str, Any]], name: str) -> None:
    env = _environment(services[name])
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == ("SASL_PLAINTEXT", SCRAM_ONLY)
    assert env["KAFKA_SASL_USERNAME"] == name
    assert env["KAFKA_SASL_PASSWORD"] == REQUIRED_VARS[f"KAFKA_{name.upper()}_PASSWORD"]
    assert env["KAFKA_CREATE_TOPICS"] == "false", "topics are kafka-setup's to create"
    assert env["KAFKA_TOPIC_PARTITIONS"] == _environment(services["kafka-setup"])["KAFKA_NUM_PARTITIONS"]
    assert env["TOPIC_PREFIX"] == _environment(services["kafka-setup"])["TOPIC_PREFIX"]
    others = {_environment(services[o])["KAFKA_SASL_PASSWORD"] for o in APP_SERVICES if o != name}
    assert env["KAFKA_SASL_PASSWORD"] not in others


def test_kafka_setup_job_logs_in_as_admin_and_knows_every_principal(services: dict[str, dict[str, Any]]) -> None:
    setup = services["kafka-setup"]
    assert setup["image"] == services["kafka"]["image"]
    assert setup["command"] == ["/bin/bash", "/etc/kafka/compose/provision.sh"]
    assert "./deploy/kafka:/etc/kafka/compose:ro" in setup["volumes"]
    assert _depends_on(setup) == {"kafka": {"condition": "service_healthy"}}
    env = _environment(setup)
    assert env["KAFKA_ADMIN_PASSWORD"] == REQUIRED_VARS["KAFKA_ADMIN_PASSWORD"]
    passwords = {key for key in env if key.startswith("KAFKA_") and key.endswith("_PASSWORD")}
    passwords.discard("KAFKA_ADMIN_PASSWORD")
    assert passwords == {f"KAFKA_{p.upper().replace('-', '_')}_PASSWORD" for p in principals()}
    assert env["KAFKA_OPERATOR_PASSWORD"] == "", "optional: the dead-letter tool's login"
    for name in APP_SERVICES:  # a service's login is the one kafka-setup creates for its principal
        assert env[f"KAFKA_{name.upper()}_PASSWORD"] == _environment(services[name])["KAFKA_SASL_PASSWORD"]
    assert env["KAFKA_NUM_PARTITIONS"] == "4"


def _run_provisioning(env: dict[str, str | None], tmp_path: Path, prefix: str) -> list[list[str]]:
    """deploy/kafka/provision.sh against stand-ins of Kafka's tools that record their arguments."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for tool in ("kafka-topics.sh", "kafka-configs.sh", "kafka-acls.sh"):
        stand_in = bin_dir / tool
        stand_in.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$(basename "$0") $*" >> "$CALLS_LOG"\n')
        stand_in.chmod(0o755)
    run_env = {k: v for k, v in env.items() if v is not None}
    run_env.update({"PATH": "/usr/bin:/bin", "KAFKA_BIN": str(bin_dir), "CALLS_LOG": str(log), "TOPIC_PREFIX": prefix})
    result = subprocess.run(
        ["bash", str(KAFKA_DIR / "provision.sh")], env=run_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [line.split() for line in log.read_text().splitlines()]


def _option_values(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == option]


def test_compose_provisions_exactly_the_topics_and_acls_the_code_implies(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    prefix = "tenant-a."
    env = {**_environment(services["kafka-setup"]), "KAFKA_OPERATOR_PASSWORD": "operator-test-password-0123456789"}
    calls = _run_provisioning(env, tmp_path, prefix)
    topics = Topics(prefix)

    created = {
        (_option_values(c, "--topic")[0], int(_option_values(c, "--partitions")[0]))
        for c in calls
        if c[0] == "kafka-topics.sh"
    }
    partitions = int(env["KAFKA_NUM_PARTITIONS"] or 0)
    assert created == {(name, n or partitions) for name, n in provisioned_topics(topics)}
    assert all("--if-not-exists" in c for c in calls if c[0] == "kafka-topics.sh")

    users = {_option_values(c, "--entity-name")[0] for c in calls if c[0] == "kafka-configs.sh"}
    assert users == set(principals())
    for c in (c for c in calls if c[0] == "kafka-configs.sh"):
        password = env[f"KAFKA_{_option_values(c, '--entity-name')[0].upper().replace('-', '_')}_PASSWORD"]
        assert _option_values(c, "--add-config") == [f"SCRAM-SHA-512=[iterations=8192,password={password}]"]

    applied = set()
    for c in (c for c in calls if c[0] == "kafka-acls.sh"):
        (principal,) = _option_values(c, "--allow-principal")
        (operation,) = _option_values(c, "--operation")
        assert "--add" in c
        assert principal.startswith("User:")
        for resource in ("topic", "group"):
            applied |= {(principal[5:], resource, n, operation) for n in _option_values(c, f"--{resource}")}
    assert applied == {(a.principal, a.resource, a.name, a.operation) for a in acls(topics)}


def test_kafka_setup_without_the_operator_password_skips_only_that_login(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    calls = _run_provisioning(_environment(services["kafka-setup"]), tmp_path, "")
    users = {_option_values(c, "--entity-name")[0] for c in calls if c[0] == "kafka-configs.sh"}
    assert users == set(principals()) - {"operator"}


def test_kafka_setup_refuses_a_weak_password(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    env = {**_environment(services["kafka-setup"]), "KAFKA_GATEWAY_PASSWORD": "short"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kafka-topics.sh", "kafka-configs.sh", "kafka-acls.sh"):
        (bin_dir / tool).write_text("#!/usr/bin/env bash\n")
        (bin_dir / tool).chmod(0o755)
    run_env = {k: v for k, v in env.items() if v is not None} | {"PATH": "/usr/bin:/bin", "KAFKA_BIN": str(bin_dir)}
    result = subprocess.run(["bash", str(KAFKA_DIR / "provision.sh")], env=run_env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "KAFKA_GATEWAY_PASSWORD must be at least 16 characters" in result.stderr


def test_the_mapping_internal_api_is_on_its_own_unpublished_port(services: dict[str, dict[str, Any]]) -> None:
    mapping = _environment(services["mapping"])
    assert mapping["INTERNAL_HTTP_PORT"] == str(MAPPING_INTERNAL_PORT) != mapping["HTTP_PORT"]
    assert mapping["INTERNAL_HTTP_HOST"] == "0.0.0.0"  # inside the compose network; nothing publishes it
    assert not _published_ports(services["mapping"])
    internal = f"http://mapping:{MAPPING_INTERNAL_PORT}"
    assert _environment(services["publisher"])["PROCORE_TOKENS_URL"] == internal
    assert _environment(services["gateway"])["MAPPING_URL"] == internal
    assert len(mapping["INTERNAL_API_TOKEN"] or "") >= 32


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {source for service in services.values() for source in _named_volume_sources(service)}
    assert {"kafka-data", "postgres-data"} <= used
    assert used <= declared, f"undeclared volumes: {sorted(used - declared)}"
    assert declared <= used, f"unused volumes: {sorted(declared - used)}"


def test_bind_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source in _bind_sources(service):
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_published_ports_do_not_collide(services: dict[str, dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for name, service in services.items():
        for host_ip, host_port, protocol in _published_ports(service):
            key = (host_port, protocol)
            assert key not in seen, f"{name} and {seen[key]} both publish {host_port}/{protocol}"
            seen[key] = name
            assert host_ip == "127.0.0.1", f"{name} publishes {host_port} on every interface"
    http_ports = [APP_SERVICES[name] for name in APP_SERVICES]
    assert len(set(http_ports)) == len(http_ports)


def test_build_contexts_and_dockerfiles_exist(services: dict[str, dict[str, Any]]) -> None:
    built = {name: service["build"] for name, service in services.items() if "build" in service}
    # Built once, by the first container to run; the others use the tag (parallel builds of one tag can fail).
    assert set(built) == {"db-provision"}
    python_containers = set(APP_SERVICES) | {"procore-sandbox", "db-provision", "preflight"}
    assert {services[name]["image"] for name in python_containers} == {"procore-publishing:local"}
    assert all(services[name].get("pull_policy") == "never" for name in python_containers - set(built))
    for name, build in built.items():
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        assert context.is_dir(), f"{name}: missing build context {context}"
        dockerfile = context / ("Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
        assert dockerfile.is_file(), f"{name}: missing {dockerfile}"
        assert dockerfile.resolve() == DOCKERFILE


def test_dockerfile() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    assert froms, froms
    assert all(image == "python:3.11-slim" for image in froms), froms
    copied = " ".join(line for line in lines if line.upper().startswith("COPY "))
    for item in ("requirements.lock", "pyproject.toml", "shared/", "services/", "sandbox/"):
        assert item in copied, item
        assert (ROOT / item).exists(), item
    assert any(line.endswith("pip install -r requirements.lock") for line in lines), "the image installs the lock"
    assert "devstack" not in copied, "make run's local infrastructure stays out of the production image"
    assert any("pip install --no-deps ." in line for line in lines)
    # The import check runs in the runtime stage (no source tree there) and insists on the installed files.
    runtime = DOCKERFILE.read_text(encoding="utf-8").split("AS runtime", 1)[1]
    assert "import_module" in runtime
    assert "/opt/venv/" in runtime
    assert not any("[dev]" in line for line in lines)
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert users, users
    assert users[-1].split(":")[0] not in ("root", "0"), users
    assert not any(line.upper().startswith(("CMD", "ENTRYPOINT")) for line in lines)


def test_dockerignore_keeps_what_the_image_needs() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    assert "*" in lines
    for item in ("pyproject.toml", "requirements.lock", "shared/", "services/", "sandbox/"):
        assert f"!{item}" in lines, item
    assert "!devstack/" not in lines


def test_otel_collector_config(services: dict[str, dict[str, Any]]) -> None:
    mounts = [str(volume) for volume in services["otel-collector"]["volumes"]]
    assert any(mount.startswith("./deploy/otel-collector.yaml:") for mount in mounts), mounts

    config = yaml.safe_load(OTEL_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    pipelines = config["service"]["pipelines"]
    assert "traces" in pipelines
    for pipeline_name, pipeline in pipelines.items():
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                assert component in (config.get(section) or {}), f"{pipeline_name}: undefined {component}"
        assert pipeline.get("receivers"), pipeline_name
        assert pipeline.get("exporters"), pipeline_name
    for extension in config["service"].get("extensions", []):
        assert extension in (config.get("extensions") or {}), extension

    assert config["extensions"]["health_check"]["endpoint"].endswith(":13133")
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    assert "batch" in pipelines["traces"]["processors"]
    otlp_exporters = {name: exporter for name, exporter in config["exporters"].items() if name.split("/")[0] == "otlp"}
    assert otlp_exporters, "no otlp exporter"
    for exporter in otlp_exporters.values():
        assert exporter["endpoint"] == "jaeger:4317"
        assert exporter["tls"]["insecure"] is True
        assert "jaeger" in services
    assert any(name.split("/")[0] == "debug" for name in config["exporters"])
    assert set(otlp_exporters) <= set(pipelines["traces"]["exporters"])


def test_jaeger_ui_is_published(services: dict[str, dict[str, Any]]) -> None:
    jaeger = services["jaeger"]
    assert jaeger["image"].startswith(("jaegertracing/all-in-one:", "jaegertracing/jaeger:"))
    assert ("127.0.0.1", "16686", "tcp") in _published_ports(jaeger)


SETTINGS_CLASSES = {
    "aggregator": "services.aggregator.config:AggregatorSettings",
    "publisher": "services.publisher.config:PublisherSettings",
    "mapping": "services.mapping.config:MappingSettings",
    "gateway": "services.gateway.config:GatewaySettings",
}


@pytest.mark.parametrize("name", sorted(SETTINGS_CLASSES))
def test_compose_environment_satisfies_the_service_settings(
    services: dict[str, dict[str, Any]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's own settings class accepts exactly the environment compose gives it."""
    import importlib
    import os

    module, cls_name = SETTINGS_CLASSES[name].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    env = services[name]["environment"]
    env = env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)
    for key in list(os.environ):
        if key.isupper():
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = cls()
    assert settings.http_port == int(env["HTTP_PORT"])


# --------------------------------------------------------------------------- database roles


def test_the_provisioning_job_alone_has_the_administrators_dsn(services: dict[str, dict[str, Any]]) -> None:
    job = services["db-provision"]
    assert job["command"] == ["python", "-m", "shared.provision"]
    assert _depends_on(job) == {
        "postgres": {"condition": "service_healthy"},
        "preflight": {"condition": "service_completed_successfully"},
    }
    env = _environment(job)
    assert env["DATABASE_ADMIN_URL"] == "postgresql://postgres:postgres@postgres:5432/procore"
    assert {k: env[k] for k in DB_PASSWORDS} == DB_PASSWORDS
    for name in APP_SERVICES:
        app_env = _environment(services[name])
        assert "DATABASE_ADMIN_URL" not in app_env, name
        assert not any(k.endswith("_DB_PASSWORD") for k in app_env), name


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_each_service_connects_as_its_own_role_with_its_own_password(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    from urllib.parse import urlsplit

    url = urlsplit(str(_environment(services[name])["DATABASE_URL"]))
    assert (url.username, url.password) == (name, DB_PASSWORDS[f"{name.upper()}_DB_PASSWORD"])
    assert (url.hostname, url.port, url.path) == ("postgres", 5432, "/procore")


def test_the_provisioning_job_environment_satisfies_its_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from shared.provision import ProvisionSettings

    for key in list(os.environ):
        if key.isupper():
            monkeypatch.delenv(key)
    for key, value in _environment(services["db-provision"]).items():
        monkeypatch.setenv(key, str(value))
    settings = ProvisionSettings()
    assert settings.db_prefix == ""
    assert settings.passwords() == {s: DB_PASSWORDS[f"{s.upper()}_DB_PASSWORD"] for s in APP_SERVICES}


def test_the_preflight_job_checks_every_secret_before_anything_else_starts(services: dict[str, dict[str, Any]]) -> None:
    from shared.preflight import checks, problems

    job = services["preflight"]
    assert job["command"] == ["python", "-m", "shared.preflight"]
    env = _environment(job)
    assert set(checks()) <= set(env)
    assert problems(_valued(env)) == []
    starters = {name for name, service in services.items() if "preflight" in _depends_on(service)}
    assert set(APP_SERVICES) | {"db-provision"} <= starters


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("TOKEN_ENCRYPTION_KEYS", "not-a-fernet-key", "TOKEN_ENCRYPTION_KEYS key 1 is not a Fernet key"),
        ("INTERNAL_API_TOKEN", "short", "INTERNAL_API_TOKEN must be at least 32 characters"),
        ("KAFKA_PUBLISHER_PASSWORD", "p@ss:word-0123456789", "KAFKA_PUBLISHER_PASSWORD must be at least 16"),
        ("GATEWAY_DB_PASSWORD", "short", "GATEWAY_DB_PASSWORD must be at least 16 URL-safe"),
        ("JWKS_URL", "http://core.example/jwks", "JWKS_URL must be an https URL"),
    ],
)
def test_preflight_names_a_bad_secret_and_what_it_must_be(
    services: dict[str, dict[str, Any]], name: str, value: str, says: str
) -> None:
    from shared.preflight import problems

    env = {**_environment(services["preflight"]), name: value}
    (line,) = problems(_valued(env))
    assert line.startswith(f"preflight: {says}"), line


def test_connect_with_procore_sends_the_browser_to_a_host_it_can_reach(services: dict[str, dict[str, Any]]) -> None:
    mapping = _environment(services["mapping"])
    assert mapping["PROCORE_LOGIN_URL"] == "http://procore-sandbox:8090"  # the services' way in
    assert mapping["PROCORE_BROWSER_LOGIN_URL"] == "http://localhost:8090"  # the browser's
    assert ("127.0.0.1", "8090", "tcp") in _published_ports(services["procore-sandbox"])


def test_the_demo_profile_signs_in_on_the_gateways_loopback_and_seeds_as_core(
    services: dict[str, dict[str, Any]],
) -> None:
    demo = {name for name, service in services.items() if "demo" in service.get("profiles", [])}
    assert demo == {"demo-issuer", "demo-seed"}
    for name in demo:
        assert services[name]["network_mode"] == "service:gateway", name  # JWKS on the gateway's own loopback
    assert services["demo-issuer"]["command"][:3] == ["python", "-m", "sandbox.issuer"]
    seed = _environment(services["demo-seed"])
    assert services["demo-seed"]["command"] == ["python", "-m", "sandbox.demo"]
    assert seed["KAFKA_SASL_USERNAME"] == "mobiclocks-core"
    assert seed["GATEWAY_URL"] == "http://127.0.0.1:8000"
    # Everything else runs without the profile.
    for name, service in services.items():
        if name not in demo:
            assert not set(_depends_on(service)) & demo, name
    from shared.preflight import problems

    demo_env = {**_environment(services["preflight"]), "JWKS_URL": "http://127.0.0.1:8095/.well-known/jwks.json"}
    assert problems(_valued(demo_env)) == []
