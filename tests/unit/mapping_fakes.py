"""In-memory fakes of what the mapping use cases receive (`services.mapping.ports`): the tables in dictionaries, a
unit of work whose transaction rolls the dictionaries back when its block raises, Procore's lists as given, and a
token revoker that remembers. They keep the rules the SQL of `services.mapping.adapters` keeps (what a sync diff
is, when a mapping change is seen by others, who holds a company); the integration tests run the real adapters."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from services.mapping.adapters.bindings import Binding, StoredAttempt
from services.mapping.adapters.changes import Change
from services.mapping.adapters.mappings import StoredMapping
from services.mapping.adapters.procore_entities import KnownEntity, SyncDiff, SyncedEntity
from services.mapping.adapters.procore_links import StoredProcoreLink
from services.mapping.adapters.setups import StoredSetup
from services.mapping.adapters.sync_jobs import JobLost
from services.mapping.domain import MobiClocksRow, ProcoreRow, Source
from services.mapping.proof import Attempt, Proof, ReachedCompany
from shared.events import (
    CompleteProcoreConnection,
    ConnectionStatus,
    Module,
    ProcoreEntity,
    ReferenceDeleted,
    ReferenceKind,
    ReferenceUpserted,
)
from shared.procore import OAuthError, OAuthTokens

MappingKey = tuple[str, ProcoreEntity, str, int]
"""account, entity, MobiClocks id, Procore project (0: not per project)."""
EntityKey = tuple[str, ProcoreEntity, int, int]
"""account, entity, Procore project (0: not per project), Procore id."""


@dataclass
class KnownProcoreEntity:
    name: str
    number: str | None
    gone: bool = False


@dataclass
class Reference:
    name: str | None
    number: str | None
    linked_procore_id: int | None
    deleted: bool = False


@dataclass
class Job:
    account_id: str
    command: dict[str, Any]
    state: str = "queued"
    owner: str | None = None
    error: str | None = None


@dataclass
class Outcome:
    account_id: str
    command_type: str
    status: str
    message: str | None
    details: dict[str, Any] | None
    changes: list[dict[str, Any]]


@dataclass
class Tables:
    """Every table the use cases touch, as rows in dictionaries."""

    setups: dict[str, StoredSetup] = field(default_factory=dict)
    bindings: dict[int, tuple[str, Binding]] = field(default_factory=dict)
    links: dict[str, StoredProcoreLink] = field(default_factory=dict)
    mappings: dict[MappingKey, StoredMapping] = field(default_factory=dict)
    entities: dict[EntityKey, KnownProcoreEntity] = field(default_factory=dict)
    synced: set[tuple[str, ProcoreEntity, int]] = field(default_factory=set)
    directories: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    references: dict[tuple[str, ReferenceKind, str], Reference] = field(default_factory=dict)
    outcomes: dict[UUID, Outcome] = field(default_factory=dict)
    automap_reports: dict[tuple[str, ProcoreEntity], tuple[tuple[int, int, int], list[dict[str, Any]]]] = field(
        default_factory=dict
    )
    jobs: dict[UUID, Job] = field(default_factory=dict)
    attempts: dict[bytes, StoredAttempt] = field(default_factory=dict)
    outbox: list[Change] = field(default_factory=list)
    commands: list[CompleteProcoreConnection] = field(default_factory=list)


class FakeStore:
    """`ports.MappingStore` over `Tables` (what `adapters.store.PgMappingStore` keeps in PostgreSQL)."""

    def __init__(self) -> None:
        self.t = Tables()
        self.locked: list[str] = []
        self.now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
        """The database's clock."""

    # --- setups -----------------------------------------------------------------------------

    async def lock_account(self, account_id: str) -> None:
        self.locked.append(account_id)

    async def read_setup(self, account_id: str) -> StoredSetup | None:
        return self.t.setups.get(account_id)

    async def save_setup(
        self,
        account_id: str,
        company_id: int | None,
        modules: Sequence[Module],
        two_way: bool,
        updated_by: str | None,
        auto_publish: Mapping[Module, int] | None = None,
    ) -> None:
        old = self.t.setups.get(account_id)
        kept = dict(auto_publish) if auto_publish is not None else (old.auto_publish if old else {})
        self.t.setups[account_id] = StoredSetup(company_id, list(modules), two_way, kept)

    async def is_two_way(self, account_id: str) -> bool:
        setup = self.t.setups.get(account_id)
        return setup is not None and setup.two_way

    # --- bindings ---------------------------------------------------------------------------

    async def holder_of(self, company_id: int) -> str | None:
        held = self.t.bindings.get(company_id)
        return held[0] if held else None

    async def holders(self, company_ids: Sequence[int]) -> dict[int, str]:
        return {c: self.t.bindings[c][0] for c in company_ids if c in self.t.bindings}

    async def bind(
        self, account_id: str, companies: Sequence[ReachedCompany], proof: Proof, connect_command: UUID, bound_by: str
    ) -> list[int]:
        bound = []
        for c in companies:
            if c.procore_company_id not in self.t.bindings:
                binding = Binding(c.procore_company_id, c.name, c.is_active, proof)
                self.t.bindings[c.procore_company_id] = (account_id, binding)
                bound.append(c.procore_company_id)
        return bound

    async def rename(self, account_id: str, companies: Sequence[ReachedCompany]) -> None:
        for c in companies:
            held = self.t.bindings.get(c.procore_company_id)
            if held is not None and held[0] == account_id:
                renamed = replace(held[1], name=c.name, is_active=c.is_active)
                self.t.bindings[c.procore_company_id] = (account_id, renamed)

    async def unbind(self, account_id: str, company_id: int) -> Binding | None:
        held = self.t.bindings.get(company_id)
        if held is None or held[0] != account_id:
            return None
        del self.t.bindings[company_id]
        return held[1]

    # --- OAuth attempts ---------------------------------------------------------------------

    async def save_attempt(
        self,
        state_hash: bytes,
        browser_hash: bytes,
        account_id: str,
        requested_by: str,
        permissions: Sequence[str],
        redirect_uri: str,
        code_verifier: str | None,
        ttl_s: float,
    ) -> None:
        attempt = Attempt(browser_hash, self.now + timedelta(seconds=ttl_s), None)
        stored = StoredAttempt(attempt, account_id, requested_by, list(permissions), redirect_uri, code_verifier)
        self.t.attempts[state_hash] = stored

    async def use_attempt(self, state_hash: bytes) -> tuple[StoredAttempt, datetime] | None:
        stored = self.t.attempts.get(state_hash)
        if stored is None:
            return None
        used = stored.attempt.used_before or self.now
        self.t.attempts[state_hash] = replace(stored, attempt=replace(stored.attempt, used_before=used))
        return stored, self.now

    # --- Procore links ----------------------------------------------------------------------

    async def read_procore_link(self, account_id: str) -> StoredProcoreLink | None:
        return self.t.links.get(account_id)

    async def lock_procore_link(self, account_id: str) -> StoredProcoreLink | None:
        return self.t.links.get(account_id)

    async def set_link_status(self, account_id: str, status: ConnectionStatus, message: str | None) -> None:
        link = self.t.links.get(account_id)
        if link is not None:
            self.t.links[account_id] = replace(
                link,
                status=status,
                message=message,
                access_token=None,
                refresh_token=None,
                expires_at=None,
                client_secret=None,
            )

    async def link_status(self, account_id: str) -> ConnectionStatus | None:
        link = self.t.links.get(account_id)
        return link.status if link is not None else None

    async def save_new_link(
        self,
        account_id: str,
        grant_type: str,
        tokens: OAuthTokens,
        connected_by: str,
        connect_command: UUID,
        client: tuple[str, str] | None = None,
        client_company: int | None = None,
    ) -> None:
        self.t.links[account_id] = StoredProcoreLink(
            account_id,
            grant_type,
            ConnectionStatus.CONNECTED,
            tokens.access_token,
            tokens.refresh_token,
            datetime.fromtimestamp(tokens.expires_at, UTC),
            None,
            connect_command,
            client[0] if client else None,
            client[1] if client else None,
            client_company,
        )

    # --- mappings ---------------------------------------------------------------------------

    def _of(self, account_id: str, entity: ProcoreEntity | None = None) -> list[StoredMapping]:
        return [
            m
            for (account, e, _, _), m in sorted(self.t.mappings.items(), key=lambda kv: kv[0][2:])
            if account == account_id and (entity is None or e is entity)
        ]

    async def mappings_of_entity(
        self, account_id: str, entity: ProcoreEntity, project_id: int | None = None
    ) -> list[StoredMapping]:
        return [m for m in self._of(account_id, entity) if project_id is None or m.procore_project_id == project_id]

    async def all_mappings(self, account_id: str) -> list[StoredMapping]:
        return self._of(account_id)

    async def holders_of(
        self, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
    ) -> list[str]:
        return [
            m.mobiclocks_id
            for m in self._of(account_id, entity)
            if m.procore_project_id == (project_id or 0) and m.procore_id == procore_id and m.broken_reason is None
        ]

    async def set_mapping(
        self,
        account_id: str,
        entity: ProcoreEntity,
        mobiclocks_id: str,
        project_id: int | None,
        procore_id: int | None,
        source: str,
        updated_by: str | None,
    ) -> bool:
        key = (account_id, entity, mobiclocks_id, project_id or 0)
        current = self.t.mappings.get(key)
        working = current.procore_id if current is not None and current.broken_reason is None else None
        if procore_id is None:
            if current is None:
                return False
            del self.t.mappings[key]
            return working is not None
        self.t.mappings[key] = StoredMapping(entity, mobiclocks_id, project_id or 0, procore_id, Source(source), None)
        return working != procore_id

    def _to(self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]) -> list[Any]:
        return [
            (k, m)
            for k, m in self.t.mappings.items()
            if k[0] == account_id and k[1] is entity and k[3] == project_id and m.procore_id in procore_ids
        ]

    async def mark_broken(
        self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
    ) -> list[StoredMapping]:
        broken = []
        for key, m in self._to(account_id, entity, project_id, procore_ids):
            known = self.t.entities.get((account_id, entity, project_id, m.procore_id))
            if m.broken_reason is None and known is not None:
                label = entity.value.replace("_", " ")
                reason = f"Procore {label} {known.name or m.procore_id} no longer exists in Procore"
                self.t.mappings[key] = replace(m, broken_reason=reason)
                broken.append(self.t.mappings[key])
        return broken

    async def restore_broken(
        self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
    ) -> list[StoredMapping]:
        restored = []
        for key, m in self._to(account_id, entity, project_id, procore_ids):
            if m.broken_reason is not None:
                self.t.mappings[key] = replace(m, broken_reason=None)
                restored.append(self.t.mappings[key])
        return restored

    async def working_mappings_to(
        self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
    ) -> list[StoredMapping]:
        return [m for _, m in self._to(account_id, entity, project_id, procore_ids) if m.broken_reason is None]

    async def delete_account_mappings(self, account_id: str) -> list[StoredMapping]:
        gone = self._of(account_id)
        self.t.mappings = {k: m for k, m in self.t.mappings.items() if k[0] != account_id}
        return [m for m in gone if m.broken_reason is None]

    async def mapped_project_ids(self, account_id: str) -> list[int]:
        return sorted({m.procore_id for m in self._of(account_id, ProcoreEntity.PROJECT) if m.broken_reason is None})

    # --- synced Procore lists ---------------------------------------------------------------

    async def apply_sync(
        self, account_id: str, entity: ProcoreEntity, project_id: int, items: Sequence[SyncedEntity]
    ) -> SyncDiff:
        before = {k[3]: e for k, e in self.t.entities.items() if k[:3] == (account_id, entity, project_id)}
        seen = {i.procore_id for i in items}
        returned = sorted(i.procore_id for i in items if i.procore_id in before and before[i.procore_id].gone)
        renamed = sorted(
            i.procore_id
            for i in items
            if i.procore_id in before and not before[i.procore_id].gone and before[i.procore_id].name != i.name
        )
        gone = sorted(pid for pid, e in before.items() if pid not in seen and not e.gone)
        for i in items:
            self.t.entities[(account_id, entity, project_id, i.procore_id)] = KnownProcoreEntity(i.name, i.number)
        for pid in gone:
            self.t.entities[(account_id, entity, project_id, pid)].gone = True
        self.t.synced.add((account_id, entity, project_id))
        added = sorted(seen - before.keys())
        return SyncDiff(added=added, renamed=renamed, gone=gone, returned=returned, total=len(items))

    async def procore_entity(
        self, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
    ) -> KnownEntity | None:
        e = self.t.entities.get((account_id, entity, project_id or 0, procore_id))
        return KnownEntity(e.name, e.number, e.gone) if e is not None else None

    async def procore_rows(self, account_id: str, entity: ProcoreEntity, project_id: int) -> list[ProcoreRow]:
        return [
            ProcoreRow(k[3], e.name, e.number)
            for k, e in sorted(self.t.entities.items(), key=lambda kv: kv[0][3])
            if k[:3] == (account_id, entity, project_id) and not e.gone
        ]

    async def project_of_cost_code(self, account_id: str, procore_id: int) -> int | None:
        return next(
            (
                k[2]
                for k, e in self.t.entities.items()
                if k[0] == account_id and k[1] is ProcoreEntity.COST_CODE and k[3] == procore_id and not e.gone
            ),
            None,
        )

    async def was_synced(self, account_id: str, entity: ProcoreEntity, project_id: int) -> bool:
        return (account_id, entity, project_id) in self.t.synced

    async def forget_procore_entities(self, account_id: str) -> None:
        self.t.entities = {k: e for k, e in self.t.entities.items() if k[0] != account_id}
        self.t.synced = {s for s in self.t.synced if s[0] != account_id}
        self.t.automap_reports = {k: r for k, r in self.t.automap_reports.items() if k[0] != account_id}

    async def replace_directories(self, account_id: str, directories: dict[int, list[int]]) -> None:
        self.t.directories[account_id] = {p: sorted(set(people)) for p, people in directories.items()}

    # --- MobiClocks references --------------------------------------------------------------

    async def save_reference(self, event: ReferenceUpserted | ReferenceDeleted) -> None:
        key = (event.account_id, event.kind, event.entity_id)
        if isinstance(event, ReferenceDeleted):
            if key in self.t.references:
                self.t.references[key].deleted = True
            return
        self.t.references[key] = Reference(event.name, event.number, event.linked_procore_id)

    def _live(self, account_id: str) -> list[tuple[ReferenceKind, str, Reference]]:
        return [
            (kind, entity_id, r)
            for (account, kind, entity_id), r in sorted(self.t.references.items(), key=lambda kv: kv[0][2])
            if account == account_id and not r.deleted
        ]

    async def reference_rows(self, account_id: str, kind: ReferenceKind) -> list[MobiClocksRow]:
        return [MobiClocksRow(i, r.name or "", r.number) for k, i, r in self._live(account_id) if k is kind]

    async def linked_references(self, account_id: str) -> list[tuple[ReferenceKind, str, int, str]]:
        return [
            (k, i, r.linked_procore_id, r.name or "")
            for k, i, r in self._live(account_id)
            if r.linked_procore_id is not None
        ]

    async def reference_name(self, account_id: str, kind: ReferenceKind, entity_id: str) -> str | None:
        r = self.t.references.get((account_id, kind, entity_id))
        return r.name if r is not None else None

    # --- outcomes ---------------------------------------------------------------------------

    async def is_finished(self, command_id: UUID) -> bool:
        return command_id in self.t.outcomes

    async def record_outcome(
        self,
        command_id: UUID,
        account_id: str,
        command_type: str,
        status: str,
        message: str | None,
        details: dict[str, Any] | None,
        requested_by: str | None,
        changes: list[dict[str, Any]] | None = None,
    ) -> bool:
        if command_id in self.t.outcomes:
            return False
        self.t.outcomes[command_id] = Outcome(account_id, command_type, status, message, details, changes or [])
        return True

    async def save_automap_report(
        self,
        account_id: str,
        entity: ProcoreEntity,
        requested_by: str | None,
        overwrite_manual: bool,
        counts: tuple[int, int, int],
        details: list[dict[str, Any]],
    ) -> None:
        self.t.automap_reports[(account_id, entity)] = (counts, details)

    # --- sync jobs --------------------------------------------------------------------------

    async def enqueue_job(
        self, job_id: UUID, account_id: str, entity: str, command: dict[str, Any], requested_by: str | None
    ) -> bool:
        if job_id in self.t.jobs:
            return False
        self.t.jobs[job_id] = Job(account_id, command)
        return True

    async def has_open_job(self, account_id: str) -> bool:
        return any(
            j.account_id == account_id and j.state in ("queued", "running", "waiting") for j in self.t.jobs.values()
        )

    async def finish_job(self, job_id: UUID, owner: str, state: str, error: str | None) -> None:
        job = self.t.jobs.get(job_id)
        if job is None or job.owner != owner or job.state not in ("queued", "running", "waiting"):
            raise JobLost(str(job_id))
        job.state, job.error, job.owner = state, error, None

    # --- outbox -----------------------------------------------------------------------------

    async def emit(self, changes: Sequence[Change]) -> None:
        self.t.outbox += changes

    async def queue_command(self, cmd: CompleteProcoreConnection) -> None:
        self.t.commands.append(cmd)


class FakeUnitOfWork:
    """`ports.UnitOfWork` over one `FakeStore`: a transaction that raises leaves the tables as they were."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.transactions = 0

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[FakeStore]:
        yield self.store

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeStore]:
        self.transactions += 1
        before = copy.deepcopy(self.store.t)
        try:
            yield self.store
        except BaseException:
            self.store.t = before
            raise


@dataclass
class FakeProcore:
    """`ports.ProcoreLists`: the companies and lists Procore would answer, and the calls asked of it."""

    reached: list[ReachedCompany] = field(default_factory=list)
    lists: dict[tuple[ProcoreEntity, int | None], list[SyncedEntity]] = field(default_factory=dict)
    people: dict[int, list[int]] = field(default_factory=dict)
    error: Exception | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    after_fetch: Callable[[], Awaitable[None]] | None = None
    """Runs after each list is fetched: what happens meanwhile elsewhere."""

    async def companies(self, header_company: int | None = None) -> list[ReachedCompany]:
        self.calls.append(("companies", header_company))
        if self.error is not None:
            raise self.error
        return list(self.reached)

    async def fetch(self, entity: ProcoreEntity, company_id: int, project_id: int | None = None) -> list[SyncedEntity]:
        self.calls.append(("fetch", entity, company_id, project_id))
        if self.error is not None:
            raise self.error
        if self.after_fetch is not None:
            await self.after_fetch()
        return list(self.lists.get((entity, project_id), []))

    async def directory(self, company_id: int, project_id: int) -> list[int]:
        self.calls.append(("directory", company_id, project_id))
        return list(self.people.get(project_id, []))

    def held_up_s(self, company_id: int) -> float:
        return 0.0


@dataclass
class FakeDeps:
    """`ports.CommandDeps`: the fake unit of work, Procore's lists for whichever account asks, and the revocations."""

    store: FakeStore = field(default_factory=FakeStore)
    procore: FakeProcore = field(default_factory=FakeProcore)
    revoked: list[StoredProcoreLink] = field(default_factory=list)
    lists_asked: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    uow: FakeUnitOfWork = field(init=False)

    def __post_init__(self) -> None:
        self.uow = FakeUnitOfWork(self.store)

    @property
    def stores(self) -> FakeUnitOfWork:
        return self.uow

    def procore_lists(self, account_id: str, company_id: int | None, proof_header: int | None = None) -> FakeProcore:
        self.lists_asked.append((account_id, company_id, proof_header))
        return self.procore

    async def revoke_tokens(self, link: StoredProcoreLink) -> None:
        self.revoked.append(link)


@dataclass
class FakeOAuth:
    """`ports.OAuthClient`: Procore's OAuth endpoints, answering with `tokens` (or `error`), and what was asked."""

    client_id: str = "the-app"
    tokens: OAuthTokens = field(default_factory=lambda: OAuthTokens("access-1", 1_900_000_000.0, "refresh-1"))
    error: OAuthError | None = None
    exchanged: list[tuple[str, str, str | None]] = field(default_factory=list)
    secret: str | None = None

    def for_client(self, client_id: str, client_secret: str) -> FakeOAuth:
        return replace(self, client_id=client_id, secret=client_secret)

    def authorize_url(self, redirect_uri: str, state: str, code_challenge: str | None = None) -> str:
        challenge = f"&code_challenge={code_challenge}" if code_challenge else ""
        return f"https://login.example/oauth/authorize?state={state}&redirect_uri={redirect_uri}{challenge}"

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None = None) -> OAuthTokens:
        self.exchanged.append((code, redirect_uri, code_verifier))
        if self.error is not None:
            raise self.error
        return self.tokens

    async def client_credentials(self) -> OAuthTokens:
        if self.error is not None:
            raise self.error
        return self.tokens


class FakeCipher:
    """`ports.Cipher`: reversible and visibly "encrypted", bound to the account."""

    def encrypt(self, value: str, account_id: str) -> str:
        return f"enc[{account_id}]:{value}"

    def decrypt(self, value: str, account_id: str) -> str:
        prefix = f"enc[{account_id}]:"
        assert value.startswith(prefix), "decrypted for another account"
        return value.removeprefix(prefix)


@dataclass
class FakeLinkDeps:
    """`ports.LinkDeps`: the fake unit of work, OAuth client and cipher; counts the relay's wake-ups."""

    store: FakeStore = field(default_factory=FakeStore)
    oauth: FakeOAuth = field(default_factory=FakeOAuth)
    cipher: FakeCipher = field(default_factory=FakeCipher)
    pkce: bool = False
    state_ttl_s: float = 600.0
    woken: int = 0
    uow: FakeUnitOfWork = field(init=False)

    def __post_init__(self) -> None:
        self.uow = FakeUnitOfWork(self.store)

    @property
    def stores(self) -> FakeUnitOfWork:
        return self.uow

    @property
    def notify(self) -> Callable[[], None]:
        def wake() -> None:
            self.woken += 1

        return wake
