"""Proof, table-driven: every gateway route and every command, against every kind of caller that must be refused.

The routes come from the app's own route table, so a new route fails `test_every_route_is_in_the_table` until it is
classified here. For each route, aimed at account A's objects:
- no token, a development token, a token with the development audience, a wrong issuer, a wrong audience → 401;
- a user of A lacking the permission the route needs → 403 naming it;
- a user of another account B with every permission → 404, or B's own (empty) scope, never A's data;
and afterwards nothing changed (every row of the services' schemas) and nothing was emitted on Kafka.

Every command, sent straight to Kafka (bypassing the gateway) without a permissions list or without the permission
it needs (a user's or a system principal's), is refused by the service that owns the data and recorded as rejected
with the reason; A's data stays as it was and nothing is emitted. The same command from a system principal that holds
the permission does take effect (so the refusals are not vacuous).

Real broker, real PostgreSQL, the Procore sandbox and MobiClocks core's key server over HTTP; the mapping service
under uvicorn, the aggregator in-process, the gateway in production mode in-process.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Mount

from devstack.testinfra import run_id
from services.gateway.bootstrap import build_app as build_gateway
from services.gateway.tokens import DEV_AUDIENCE, Principal, issue_dev_token
from services.mapping.handlers import REQUIRED_PERMISSION
from shared import labels
from shared.broker import ensure_topics
from shared.events import (
    NO_PERMISSIONS,
    AutoMap,
    CompleteProcoreConnection,
    ConfigureSetup,
    DateRangeScope,
    DisconnectProcore,
    MappingCommand,
    Module,
    Permission,
    ProcoreEntity,
    PublishAction,
    PublishCommand,
    PublishEntries,
    RequesterKind,
    SetMapping,
    SyncProcoreEntities,
    SystemPrincipal,
    TimelogUpserted,
    UnbindProcoreCompany,
)
from tests.sandbox_fixtures import run_sandbox
from tests.support.database import provisioned
from tests.support.kafka import eventually, produce
from tests.support.mapping import (
    connect_service_account,
    fetch,
    gateway_settings,
    mapping_settings,
    outcome,
    serve_asgi,
    serve_mapping,
)
from tests.support.principals import TEST_BACKEND
from tests.support.security import snapshot, topic_records
from tests.support.stack import StackConfig, make_apps
from tests.support.tokens import ALL_PERMISSIONS, AUDIENCE, ISSUER, CoreKey, KeyServer

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 17)
MONDAY = DAY - timedelta(days=DAY.weekday())


@dataclass
class World:
    cfg: StackConfig
    gateway: FastAPI
    key: CoreKey
    owner: str
    """Account A: connected, set up, mapped, with a To do entry."""
    other: str
    """Account B: signed in with every permission, owns nothing."""
    company_id: int
    company_name: str
    vendor_id: int
    project_id: int
    site: str
    company_mc: str
    entry_id: UUID
    command_id: UUID
    """A's finished setup command (its outcome is A's)."""
    emitted: list[str] = field(default_factory=list)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.gateway), base_url="http://gateway")

    @property
    def schemas(self) -> list[str]:
        return [self.cfg.schemas["aggregator"], self.cfg.schemas["mapping"]]

    @property
    def topics(self) -> list[str]:
        t = self.cfg.topics
        return [t.publish_commands, t.mapping_commands, t.mapping_changes, t.publish_requests]

    def secrets_of_owner(self) -> list[str]:
        """What only A's data holds (another account must never see any of it)."""
        return [self.owner, self.company_name, str(self.company_id), str(self.entry_id), self.site, self.company_mc]

    async def quiet(self) -> None:
        """Until both services have sent everything they wrote (their outboxes are empty) and the aggregator has
        re-checked every entry a mapping change marked (its debounced remap is not pending)."""
        for schema in self.schemas:
            pending = f'SELECT count(*) AS n FROM "{schema}".outbox'
            remaps = await fetch(self.cfg.dsn, f"SELECT to_regclass('\"{schema}\".remap_marks') IS NOT NULL AS has")
            if remaps[0]["has"]:
                pending += f' UNION ALL SELECT count(*) FROM "{schema}".remap_marks'
            await eventually(
                functools.partial(fetch, self.cfg.dsn, pending),
                lambda rows: all(row["n"] == 0 for row in rows),
                timeout_s=30,
                what=f"an empty outbox and no pending remap in {schema}",
            )

    async def records(self) -> dict[str, list[dict[str, Any]]]:
        return {topic: await topic_records(self.cfg.kafka, topic) for topic in self.topics}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    with run_sandbox() as url:
        yield url


@pytest.fixture(scope="module")
async def world(sandbox: str, kafka_bootstrap: str, postgres_dsn: str) -> AsyncIterator[World]:
    unique = run_id()
    async with provisioned(postgres_dsn, f"t_{unique}_") as database:
        cfg = StackConfig(kafka_bootstrap, postgres_dsn, f"{unique}.", database.schemas, procore_url=sandbox)
        async for world in _world(cfg, sandbox, unique):
            yield world


async def _world(cfg: StackConfig, sandbox: str, unique: str) -> AsyncIterator[World]:
    await ensure_topics(cfg.kafka, cfg.topics.all())
    company_name = f"Owner Co {unique}"
    async with httpx.AsyncClient(base_url=sandbox) as control:
        seeded = (
            await control.post(
                "/_sandbox/companies",
                json={
                    "name": company_name,
                    "projects": [{"name": "Tower A", "project_number": "P-100"}],
                    "vendors": [{"name": f"Acme {unique}"}],
                },
            )
        ).json()
    key = CoreKey("RS256", f"core-{unique}")
    server = KeyServer(key)
    async with (
        serve_asgi(server.app()) as key_url,
        serve_mapping(mapping_settings(cfg)) as mapping_url,
        # Under uvicorn (its own task): a module-scoped fixture ends in another task than it started in.
        serve_asgi(make_apps(cfg, ("aggregator",), None)["aggregator"]),
    ):
        settings = gateway_settings(
            cfg,
            mapping_url,
            environment="production",
            jwt_secret=None,
            jwks_url=f"{key_url}{KeyServer.PATH}",
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            # The table sends many commands per account in a few seconds; the limits have their own test.
            **{f"rate_limit_{g}": "10000/minute" for g in ("publish", "setup", "connect", "mapping", "sync")},
        )
        gateway = build_gateway(settings)
        async with gateway.router.lifespan_context(gateway):
            world = await _seed(cfg, gateway, key, unique, seeded, company_name)
            yield world


async def _seed(
    cfg: StackConfig, gateway: FastAPI, key: CoreKey, unique: str, seeded: dict[str, Any], company_name: str
) -> World:
    """Account A proves its company (its own service account), sets it up, maps it and gets a To do entry."""
    owner, site, company_mc = f"owner-{unique}", f"site-{unique}", f"co-{unique}"
    company_id = seeded["company_id"]
    project_id, vendor_id = seeded["projects"][0]["id"], seeded["vendors"][0]
    mapping_url = gateway.state.settings.mapping_url
    assert (await connect_service_account(cfg, mapping_url, owner, company_id))["status"] == "done"
    setup = ConfigureSetup(
        account_id=owner, procore_company_id=company_id, enabled_modules=[Module.MANPOWER], **TEST_BACKEND.requester()
    )
    mappings = [
        SetMapping(
            account_id=owner,
            entity=ProcoreEntity.PROJECT,
            mobiclocks_id=site,
            procore_id=project_id,
            **TEST_BACKEND.requester(),
        ),
        SetMapping(
            account_id=owner,
            entity=ProcoreEntity.VENDOR,
            mobiclocks_id=company_mc,
            procore_id=vendor_id,
            **TEST_BACKEND.requester(),
        ),
    ]
    await produce(cfg.kafka, cfg.topics.mapping_commands, [setup, *mappings], key=owner.encode())
    for command in (setup, *mappings):
        assert (await outcome(cfg.dsn, cfg.schemas["mapping"], command.event_id, 60))["status"] == "done"
    start = datetime(DAY.year, DAY.month, DAY.day, 7, tzinfo=UTC)
    timelog = TimelogUpserted(
        account_id=owner,
        timelog_id=f"tl-{unique}",
        revision=1,
        employee_id="e1",
        company_id=company_mc,
        crew_tag="Crew",
        job_site_id=site,
        work_date=DAY,
        clock_in=start,
        clock_out=start + timedelta(hours=8),
        pay_id="p1",
    )
    await produce(cfg.kafka, cfg.topics.timelogs, [timelog], key=f"{owner}:{site}".encode())
    entries = await eventually(
        lambda: fetch(
            cfg.dsn, f'SELECT entry_id, status FROM "{cfg.schemas["aggregator"]}".entries WHERE account_id = $1', owner
        ),
        lambda rows: [r["status"] for r in rows] == ["todo"],
        timeout_s=60,
        what="A's manpower entry, To do",
    )
    world = World(
        cfg,
        gateway,
        key,
        owner,
        f"other-{unique}",
        company_id,
        company_name,
        vendor_id,
        project_id,
        site,
        company_mc,
        entries[0]["entry_id"],
        setup.event_id,
    )
    await world.quiet()
    return world


# --- the route table ----------------------------------------------------------------------------------------------

Request = Callable[[World], tuple[str, Any]]
"""A concrete request aimed at account A's objects: (URL, JSON body or None)."""


@dataclass(frozen=True)
class Route:
    needs: Permission | None
    """The permission the route needs (403 without it); None: any signed-in user of the account."""
    request: Request
    other_account: Literal["404", "own scope"]
    """What a user of another account gets: A's object is not found, or the caller's own (empty) account."""


def _get(url: Callable[[World], str]) -> Request:
    return lambda w: (url(w), None)


def _send(url: Callable[[World], str], body: Callable[[World], Any]) -> Request:
    return lambda w: (url(w), body(w))


PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/health"): "readiness: no account data",
    ("GET", "/health/ready"): "readiness: no account data",
    ("GET", "/health/live"): "liveness: no account data",
    ("GET", "/metrics"): "Prometheus counters by route template and status, process statistics: no account data",
    ("GET", "/openapi.json"): "the API's contract: no account data",
    ("GET", "/"): "the dashboard page: static, it calls the API with the user's token",
    ("*", "/static"): "the dashboard's scripts and styles",
    ("GET", "/api/labels"): "the product's names of things (statuses, modules, permissions): no account data",
    ("GET", "/api/live"): "server-sent events, authenticated by a short-lived ticket (POST /api/live/ticket) rather "
    "than the bearer token: tests/integration/test_gateway_live.py",
    ("GET", "/oauth/procore/callback"): "Procore's redirect: the browser's nonce cookie and the single-use state "
    "guard it (tests/integration/test_mapping_oauth_security.py)",
    ("POST", "/webhooks/procore"): "Procore's webhook deliveries: authenticated by the hook's own secret, checked by "
    "the mapping service, rate-limited per hook (tests/integration/test_procore_webhook_route.py)",
}
DEVELOPMENT_ONLY = {("GET", "/docs"), ("POST", "/api/dev/login"), ("GET", "/dev/login")}

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/me"): Route(None, _get(lambda w: "/api/me"), "own scope"),
    ("GET", "/api/setup"): Route(None, _get(lambda w: "/api/setup"), "own scope"),
    ("GET", "/api/modules/{module}/dashboard"): Route(
        None, _get(lambda w: f"/api/modules/manpower/dashboard?week_start={MONDAY}"), "own scope"
    ),
    ("GET", "/api/modules/{module}/cells/{job_site_id}/{work_date}"): Route(
        None, _get(lambda w: f"/api/modules/manpower/cells/{w.site}/{DAY}"), "404"
    ),
    ("GET", "/api/entries/{entry_id}"): Route(None, _get(lambda w: f"/api/entries/{w.entry_id}"), "404"),
    ("POST", "/api/modules/{module}/publish"): Route(
        Permission.PUBLISH,
        _send(
            lambda w: "/api/modules/manpower/publish",
            lambda w: {"action": "force_publish", "scope": {"kind": "entries", "entry_ids": [str(w.entry_id)]}},
        ),
        "404",
    ),
    ("POST", "/api/modules/{module}/force-publish/preview"): Route(
        Permission.PUBLISH,
        _send(
            lambda w: "/api/modules/manpower/force-publish/preview",
            lambda w: {"scope": {"kind": "entries", "entry_ids": [str(w.entry_id)]}},
        ),
        "404",
    ),
    ("POST", "/api/live/ticket"): Route(None, _send(lambda w: "/api/live/ticket", lambda w: None), "own scope"),
    ("PUT", "/api/setup"): Route(
        Permission.SETUP,
        _send(lambda w: "/api/setup", lambda w: {"procore_company_id": w.company_id, "enabled_modules": ["manpower"]}),
        "own scope",
    ),
    ("PUT", "/api/mappings/{entity}/{mobiclocks_id}"): Route(
        Permission.MAPPING,
        _send(lambda w: f"/api/mappings/vendor/{w.company_mc}", lambda w: {"procore_id": w.vendor_id}),
        "own scope",
    ),
    ("GET", "/api/procore/connection"): Route(Permission.SETUP, _get(lambda w: "/api/procore/connection"), "own scope"),
    ("GET", "/api/procore/authorize"): Route(Permission.SETUP, _get(lambda w: "/api/procore/authorize"), "own scope"),
    ("POST", "/api/procore/connection"): Route(
        Permission.SETUP,
        _send(
            lambda w: "/api/procore/connection",
            lambda w: {"grant": "client_credentials", "client_id": "not-a-client", "client_secret": "not-a-secret"},
        ),
        "own scope",
    ),
    ("DELETE", "/api/procore/connection"): Route(
        Permission.SETUP, _get(lambda w: "/api/procore/connection"), "own scope"
    ),
    ("DELETE", "/api/procore/companies/{procore_company_id}"): Route(
        Permission.SETUP, _get(lambda w: f"/api/procore/companies/{w.company_id}"), "own scope"
    ),
    ("GET", "/api/mapping"): Route(Permission.MAPPING, _get(lambda w: "/api/mapping"), "own scope"),
    ("GET", "/api/mapping/{entity}"): Route(Permission.MAPPING, _get(lambda w: "/api/mapping/vendor"), "own scope"),
    ("POST", "/api/mapping/{entity}/sync"): Route(
        Permission.MAPPING, _send(lambda w: "/api/mapping/vendor/sync", lambda w: None), "own scope"
    ),
    ("POST", "/api/mapping/{entity}/auto-map"): Route(
        Permission.MAPPING, _send(lambda w: "/api/mapping/project/auto-map", lambda w: {}), "own scope"
    ),
    ("GET", "/api/commands/{command_id}"): Route(None, _get(lambda w: f"/api/commands/{w.command_id}"), "own scope"),
}


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers and mounts too."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if hasattr(route, "original_router"):  # FastAPI's included router
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif isinstance(route, Mount):
                found.add(("*", prefix + route.path))
            else:
                found.update((m, prefix + route.path) for m in route.methods or () if m != "HEAD")

    walk(app.routes, "")
    # The walk must see at least what the OpenAPI document lists.
    listed = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}
    assert listed <= found, listed - found
    return found


def test_every_route_is_in_the_table(world: World) -> None:
    production = route_table(world.gateway)
    assert production == set(ROUTES) | set(PUBLIC), "classify new routes in ROUTES or PUBLIC"
    development = build_gateway(gateway_settings(world.cfg, dev_login=True, http_host="127.0.0.1"))
    assert route_table(development) == set(ROUTES) | set(PUBLIC) | DEVELOPMENT_ONLY


# --- who is refused -----------------------------------------------------------------------------------------------


def _refused_tokens(w: World) -> dict[str, dict[str, str]]:
    """Callers without a valid token for this gateway (each for account A, with every permission)."""
    dev = issue_dev_token(Principal("u1", w.owner, frozenset(ALL_PERMISSIONS)), "d" * 40, 600)
    return {
        "no token": {},
        "a development token": {"Authorization": f"Bearer {dev}"},
        "the development audience": w.key.bearer(w.owner, aud=DEV_AUDIENCE),
        "a wrong issuer": w.key.bearer(w.owner, iss="https://elsewhere.example"),
        "a wrong audience": w.key.bearer(w.owner, aud="another-service"),
        "an expired token": w.key.bearer(w.owner, exp=int(datetime.now(UTC).timestamp()) - 3600),
    }


async def _call(http: httpx.AsyncClient, method: str, request: Request, w: World, headers: dict[str, str]) -> Any:
    url, body = request(w)
    return await http.request(method, url, json=body, headers=headers)


async def test_unauthenticated_and_unpermitted_callers_change_nothing_and_emit_nothing(world: World) -> None:
    before, sent = await snapshot(world.cfg.dsn, world.schemas), await world.records()
    problems: list[str] = []
    async with world.http() as http:
        for (method, path), route in ROUTES.items():
            for who, headers in _refused_tokens(world).items():
                answer = await _call(http, method, route.request, world, headers)
                if answer.status_code != 401 or answer.headers.get("www-authenticate") != "Bearer":
                    problems.append(f"{method} {path} with {who}: {answer.status_code} {answer.text[:200]}")
            if route.needs is not None:
                lacking = [p for p in ALL_PERMISSIONS if p != route.needs.value]
                answer = await _call(http, method, route.request, world, world.key.bearer(world.owner, lacking))
                if answer.status_code != 403 or answer.json().get("permission") != route.needs.value:
                    problems.append(f"{method} {path} without {route.needs.value}: {answer.status_code} {answer.text}")
                elif labels.PERMISSIONS[route.needs.value] not in answer.json()["detail"]:
                    problems.append(f"{method} {path}: the 403 does not name {labels.PERMISSIONS[route.needs.value]}")
    assert problems == []
    assert await world.records() == sent, "something was emitted on Kafka"
    await world.quiet()
    assert await snapshot(world.cfg.dsn, world.schemas) == before, "something changed"


async def test_another_account_never_reaches_the_owners_data(world: World) -> None:
    owner_before = await snapshot(world.cfg.dsn, world.schemas, account=world.owner)
    sent_before = await world.records()
    problems: list[str] = []
    commands: list[str] = []
    async with world.http() as http:
        for (method, path), route in ROUTES.items():
            url, body = route.request(world)
            answer = await http.request(method, url, json=body, headers=world.key.bearer(world.other))
            asked = f"{url} {body}"
            leaked = [s for s in world.secrets_of_owner() if s not in asked and s in answer.text]
            if leaked:
                problems.append(f"{method} {path}: shows the owner's {leaked}: {answer.text[:300]}")
            if route.other_account == "404" and answer.status_code != 404:
                problems.append(f"{method} {path}: {answer.status_code}, not 404")
            if route.other_account == "own scope" and (
                answer.status_code in (401, 403, 404) or answer.status_code >= 500
            ):
                problems.append(f"{method} {path}: {answer.status_code} {answer.text[:200]}")
            if answer.status_code == 202:
                commands.append(answer.json()["command_id"])
        assert problems == []
        # Its own (empty) scope, concretely: no job site, no company, no entry of A.
        board = (
            await http.get(
                f"/api/modules/manpower/dashboard?week_start={MONDAY}", headers=world.key.bearer(world.other)
            )
        ).json()
        assert board["rows"] == []
        offered = (await http.get("/api/procore/connection", headers=world.key.bearer(world.other))).json()
        assert offered["companies"] == []
        assert offered["procore_company_id"] is None
        pending = (await http.get(f"/api/commands/{world.command_id}", headers=world.key.bearer(world.other))).json()
        assert pending == {**pending, "status": "pending", "message": None}

    # Every command the other account's calls emitted is for its own account, carries its permissions, and was
    # carried out (or refused) by the mapping service before A's data is compared.
    sent_after = await world.records()
    new = [r for topic in world.topics for r in sent_after[topic] if r not in sent_before[topic]]
    assert {r["account_id"] for r in new} <= {world.other}, "a message about the owner's account was emitted"
    gateway_commands = [r for r in new if r["event_id"] in commands]
    assert gateway_commands
    assert all(r["permissions"] == ALL_PERMISSIONS for r in gateway_commands)
    assert not [
        r
        for r in sent_after[world.cfg.topics.publish_commands]
        if r not in sent_before[world.cfg.topics.publish_commands]
    ]
    for command_id in commands:
        if any(r["event_id"] == command_id for r in sent_after[world.cfg.topics.mapping_commands]):
            await outcome(world.cfg.dsn, world.cfg.schemas["mapping"], command_id, 60)
    unbind = next(r for r in new if r.get("type") == "procore.unbind_company")
    refused = await outcome(world.cfg.dsn, world.cfg.schemas["mapping"], unbind["event_id"], 60)
    assert refused["status"] == "rejected"
    assert "not connected to this account" in refused["message"]
    await world.quiet()
    assert await snapshot(world.cfg.dsn, world.schemas, account=world.owner) == owner_before


# --- every command, straight to Kafka -----------------------------------------------------------------------------


def _commands(union: Any) -> set[type]:
    inner = typing.get_args(union)[0]
    return set(typing.get_args(inner)) or {inner}


COMMAND_NEEDS: dict[type, Permission] = {
    **{cls: Permission(p.value) for cls, p in REQUIRED_PERMISSION.items()},
    PublishEntries: Permission.PUBLISH,
}

Factory = Callable[[World, dict[str, Any]], Any]

FACTORIES: dict[type, Factory] = {
    ConfigureSetup: lambda w, who: ConfigureSetup(
        account_id=w.owner, procore_company_id=None, enabled_modules=[Module.TIMECARD], **who
    ),
    SetMapping: lambda w, who: SetMapping(
        account_id=w.owner, entity=ProcoreEntity.VENDOR, mobiclocks_id=w.company_mc, procore_id=None, **who
    ),
    CompleteProcoreConnection: lambda w, who: CompleteProcoreConnection(account_id=w.owner, **who),
    DisconnectProcore: lambda w, who: DisconnectProcore(account_id=w.owner, **who),
    UnbindProcoreCompany: lambda w, who: UnbindProcoreCompany(
        account_id=w.owner, procore_company_id=w.company_id, **who
    ),
    SyncProcoreEntities: lambda w, who: SyncProcoreEntities(account_id=w.owner, entity=ProcoreEntity.VENDOR, **who),
    AutoMap: lambda w, who: AutoMap(account_id=w.owner, entity=ProcoreEntity.PROJECT, **who),
    PublishEntries: lambda w, who: PublishEntries(
        account_id=w.owner,
        module=Module.MANPOWER,
        action=PublishAction.FORCE_PUBLISH,
        scope=DateRangeScope(date_from=DAY, date_to=DAY),
        **who,
    ),
}
"""One command of each kind for account A; each would change A's data (or reach Procore for it) if allowed."""


def _refused_requesters(needed: Permission) -> dict[str, dict[str, Any]]:
    others = [p for p in Permission if p is not needed]
    return {
        "no permissions list": {"requested_by": "mallory"},
        "a user without the permission": {"requested_by": "mallory", "permissions": [p.value for p in others]},
        "a system principal without it": SystemPrincipal("system:probe", tuple(others)).requester(),
    }


def test_every_command_is_in_the_table() -> None:
    assert _commands(MappingCommand) | _commands(PublishCommand) == set(FACTORIES) == set(COMMAND_NEEDS)


async def test_commands_sent_straight_to_kafka_without_the_permission_are_refused_and_recorded(world: World) -> None:
    cfg = world.cfg
    owner_before = await snapshot(cfg.dsn, world.schemas, account=world.owner, skip=("command_outcomes",))
    history_before = await _history(world)
    changes_before = await world.records()
    sent: list[tuple[Any, str, str]] = []  # (command, requester case, expected reason)
    for cls, factory in FACTORIES.items():
        needed = COMMAND_NEEDS[cls]
        for case, who in _refused_requesters(needed).items():
            reason = NO_PERMISSIONS if case == "no permissions list" else labels.permission_sentence(needed.value)
            sent.append((factory(world, who), case, reason))
    for command, _, _ in sent:
        topic = cfg.topics.publish_commands if isinstance(command, PublishEntries) else cfg.topics.mapping_commands
        await produce(cfg.kafka, topic, [command], key=world.owner.encode())

    problems: list[str] = []
    publishes = [(c, case, reason) for c, case, reason in sent if isinstance(c, PublishEntries)]
    for command, case, reason in sent:
        if isinstance(command, PublishEntries):
            continue
        recorded = await outcome(cfg.dsn, cfg.schemas["mapping"], command.event_id, 60)
        if recorded["status"] != "rejected" or reason not in recorded["message"]:
            problems.append(f"{command.type} with {case}: {recorded}")
    history = await eventually(
        lambda: _history(world),
        lambda rows: len(rows) >= len(history_before) + len(publishes),
        timeout_s=60,
        what="the refused publish commands in the entry's history",
    )
    rejected = [r for r in history if r not in history_before]
    for command, case, reason in publishes:
        mine = [r for r in rejected if r["requested_by"] == command.requested_by and reason in (r["message"] or "")]
        if not mine or any(r["outcome"] != "rejected" for r in mine):
            problems.append(f"{command.type} with {case}: history {rejected}")
    assert problems == []

    await world.quiet()
    assert await snapshot(
        cfg.dsn, world.schemas, account=world.owner, skip=("command_outcomes", "publish_history")
    ) == {k: v for k, v in owner_before.items() if not k.endswith(".publish_history")}
    after = await world.records()
    for topic in (cfg.topics.mapping_changes, cfg.topics.publish_requests):
        new = [r for r in after[topic] if r not in changes_before[topic] and r["account_id"] == world.owner]
        assert new == [], f"something was emitted on {topic} for the owner"

    # The same kind of command from a system principal that holds the permission takes effect.
    allowed = SystemPrincipal("system:probe", (Permission.PUBLISH,)).requester()
    publish = FACTORIES[PublishEntries](world, allowed)
    assert publish.requester_kind is RequesterKind.SYSTEM
    await produce(cfg.kafka, cfg.topics.publish_commands, [publish], key=world.owner.encode())
    await eventually(
        lambda: fetch(
            cfg.dsn, f'SELECT status FROM "{cfg.schemas["aggregator"]}".entries WHERE entry_id = $1', world.entry_id
        ),
        lambda rows: rows[0]["status"] == "publishing",
        timeout_s=60,
        what="the entry publishing for an allowed system principal",
    )


async def _history(world: World) -> list[dict[str, Any]]:
    rows = await fetch(
        world.cfg.dsn,
        f'SELECT id, action, requested_by, outcome, message FROM "{world.cfg.schemas["aggregator"]}".publish_history'
        " WHERE entry_id = $1 ORDER BY id",
        world.entry_id,
    )
    return [dict(r) for r in rows]
