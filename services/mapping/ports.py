"""What the mapping use cases receive, as Protocols: the tables one transaction sees (`MappingStore`, one Protocol
per table group), the unit of work that opens such a transaction (`UnitOfWork`), an account's Procore lists
(`ProcoreLists`), the whole set a command's use case is given (`CommandDeps`), and what the connecting use cases
of the internal API are given (`LinkDeps`: the OAuth client, the cipher, the relay's wake-up).

The service gives them `adapters.store` (PostgreSQL; the SQL stays in the adapter of each table group) and
`adapters.procore_lists.AccountLists`; the unit tests give them in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from services.mapping.adapters.bindings import Binding, StoredAttempt
from services.mapping.adapters.changes import Change
from services.mapping.adapters.mappings import StoredMapping
from services.mapping.adapters.procore_entities import KnownEntity, SyncDiff, SyncedEntity
from services.mapping.adapters.procore_links import StoredProcoreLink
from services.mapping.adapters.setups import StoredSetup
from services.mapping.domain import MobiClocksRow, ProcoreRow
from services.mapping.proof import Proof, ReachedCompany
from shared.events import (
    CompleteProcoreConnection,
    ConnectionStatus,
    Module,
    ProcoreEntity,
    ReferenceDeleted,
    ReferenceKind,
    ReferenceUpserted,
)
from shared.procore import OAuthTokens


class Setups(Protocol):
    """`setups`, and the account lock every writer of an account takes first (`adapters.setups`)."""

    async def lock_account(self, account_id: str) -> None: ...

    async def read_setup(self, account_id: str) -> StoredSetup | None: ...

    async def save_setup(
        self,
        account_id: str,
        company_id: int | None,
        modules: Sequence[Module],
        two_way: bool,
        updated_by: str | None,
        auto_publish: Mapping[Module, int] | None = None,
    ) -> None: ...

    async def is_two_way(self, account_id: str) -> bool: ...


class Bindings(Protocol):
    """`company_bindings`: which account proved each Procore company (`adapters.bindings`)."""

    async def holder_of(self, company_id: int) -> str | None: ...

    async def holders(self, company_ids: Sequence[int]) -> dict[int, str]: ...

    async def bind(
        self,
        account_id: str,
        companies: Sequence[ReachedCompany],
        proof: Proof,
        connect_command: UUID,
        bound_by: str,
    ) -> list[int]: ...

    async def rename(self, account_id: str, companies: Sequence[ReachedCompany]) -> None: ...

    async def unbind(self, account_id: str, company_id: int) -> Binding | None: ...


class Attempts(Protocol):
    """`oauth_attempts`: authorization requests in flight, by the hashes of their state and browser nonce."""

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
        """`code_verifier`: encrypted."""

    async def use_attempt(self, state_hash: bytes) -> tuple[StoredAttempt, datetime] | None:
        """Mark the attempt used and return it with the store's now."""


class ProcoreLinks(Protocol):
    """`connections`: the account's Procore link and its tokens, decrypted (`adapters.procore_links`)."""

    async def read_procore_link(self, account_id: str) -> StoredProcoreLink | None: ...

    async def lock_procore_link(self, account_id: str) -> StoredProcoreLink | None: ...

    async def set_link_status(self, account_id: str, status: ConnectionStatus, message: str | None) -> None: ...

    async def link_status(self, account_id: str) -> ConnectionStatus | None: ...

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
        """Replaces the account's previous link (the tokens and a service account's secret are encrypted)."""


class Mappings(Protocol):
    """`mappings` (`adapters.mappings`)."""

    async def mappings_of_entity(
        self, account_id: str, entity: ProcoreEntity, project_id: int | None = None
    ) -> list[StoredMapping]: ...

    async def all_mappings(self, account_id: str) -> list[StoredMapping]: ...

    async def holders_of(
        self, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
    ) -> list[str]: ...

    async def set_mapping(
        self,
        account_id: str,
        entity: ProcoreEntity,
        mobiclocks_id: str,
        project_id: int | None,
        procore_id: int | None,
        source: str,
        updated_by: str | None,
    ) -> bool: ...

    async def mark_broken(
        self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
    ) -> list[StoredMapping]: ...

    async def restore_broken(
        self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
    ) -> list[StoredMapping]: ...

    async def working_mappings_to(
        self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
    ) -> list[StoredMapping]: ...

    async def delete_account_mappings(self, account_id: str) -> list[StoredMapping]: ...

    async def mapped_project_ids(self, account_id: str) -> list[int]: ...


class ProcoreEntities(Protocol):
    """Synced Procore lists, sync runs and project directories (`adapters.procore_entities`)."""

    async def apply_sync(
        self, account_id: str, entity: ProcoreEntity, project_id: int, items: Sequence[SyncedEntity]
    ) -> SyncDiff: ...

    async def procore_entity(
        self, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
    ) -> KnownEntity | None: ...

    async def procore_rows(self, account_id: str, entity: ProcoreEntity, project_id: int) -> list[ProcoreRow]: ...

    async def project_of_cost_code(self, account_id: str, procore_id: int) -> int | None: ...

    async def was_synced(self, account_id: str, entity: ProcoreEntity, project_id: int) -> bool: ...

    async def forget_procore_entities(self, account_id: str) -> None: ...

    async def replace_directories(self, account_id: str, directories: dict[int, list[int]]) -> None: ...


class References(Protocol):
    """MobiClocks reference entities (`adapters.references`)."""

    async def save_reference(self, event: ReferenceUpserted | ReferenceDeleted) -> None: ...

    async def reference_rows(self, account_id: str, kind: ReferenceKind) -> list[MobiClocksRow]: ...

    async def linked_references(self, account_id: str) -> list[tuple[ReferenceKind, str, int, str]]: ...

    async def reference_name(self, account_id: str, kind: ReferenceKind, entity_id: str) -> str | None: ...


class Outcomes(Protocol):
    """Command outcomes and auto-map reports (`adapters.outcomes`)."""

    async def is_finished(self, command_id: UUID) -> bool: ...

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
    ) -> bool: ...

    async def save_automap_report(
        self,
        account_id: str,
        entity: ProcoreEntity,
        requested_by: str | None,
        overwrite_manual: bool,
        counts: tuple[int, int, int],
        details: list[dict[str, Any]],
    ) -> None: ...


class SyncJobs(Protocol):
    """Background jobs of syncs and of the mapping commands queued behind them (`adapters.sync_jobs`)."""

    async def enqueue_job(
        self, job_id: UUID, account_id: str, entity: str, command: dict[str, Any], requested_by: str | None
    ) -> bool: ...

    async def has_open_job(self, account_id: str) -> bool: ...

    async def finish_job(self, job_id: UUID, owner: str, state: str, error: str | None) -> None:
        """Raises `adapters.sync_jobs.JobLost` when the job is not `owner`'s (any more)."""


class Outbox(Protocol):
    async def emit(self, changes: Sequence[Change]) -> None:
        """Queue changes for mapping.changes in this transaction (sent only if it commits)."""

    async def queue_command(self, cmd: CompleteProcoreConnection) -> None:
        """Queue a command to this service (mapping.commands) in this transaction."""


class MappingStore(
    Setups,
    Bindings,
    Attempts,
    ProcoreLinks,
    Mappings,
    ProcoreEntities,
    References,
    Outcomes,
    SyncJobs,
    Outbox,
    Protocol,
):
    """The mapping service's tables as one connection sees them (`adapters.store.PgMappingStore`)."""


class UnitOfWork(Protocol):
    """Opens the store: `reading()` without a transaction, `transaction()` in one (committed when the block ends
    normally, rolled back when it raises)."""

    def reading(self) -> AbstractAsyncContextManager[MappingStore]: ...

    def transaction(self) -> AbstractAsyncContextManager[MappingStore]: ...


class ProcoreLists(Protocol):
    """Procore's lists as one account's link reads them (`adapters.procore_lists.AccountLists`)."""

    async def companies(self, header_company: int | None = None) -> list[ReachedCompany]: ...

    async def fetch(
        self, entity: ProcoreEntity, company_id: int, project_id: int | None = None
    ) -> list[SyncedEntity]: ...

    async def directory(self, company_id: int, project_id: int) -> list[int]: ...

    def held_up_s(self, company_id: int) -> float:
        """Seconds until the next call for this company may go (its rate budget)."""


class CommandDeps(Protocol):
    """What a command's use case is given (`deps.MappingDeps` in the service)."""

    @property
    def stores(self) -> UnitOfWork: ...

    def procore_lists(
        self, account_id: str, company_id: int | None, proof_header: int | None = None
    ) -> ProcoreLists: ...

    async def revoke_tokens(self, link: StoredProcoreLink) -> None:
        """Revoke the link's tokens at Procore, with the client they were issued to."""


class OAuthClient(Protocol):
    """Procore's OAuth endpoints as this app, or as a customer's own service account (`shared.procore.OAuthApp`)."""

    @property
    def client_id(self) -> str: ...

    def for_client(self, client_id: str, client_secret: str) -> OAuthClient: ...

    def authorize_url(self, redirect_uri: str, state: str, code_challenge: str | None = None) -> str: ...

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str | None = None) -> OAuthTokens: ...

    async def client_credentials(self) -> OAuthTokens: ...


class Cipher(Protocol):
    """Encrypts a secret for one account (`adapters.procore_links.TokenCipher`)."""

    def encrypt(self, value: str, account_id: str) -> str: ...

    def decrypt(self, value: str, account_id: str) -> str: ...


class LinkDeps(Protocol):
    """What the connecting use cases of the internal API are given (`deps.MappingDeps` in the service)."""

    @property
    def stores(self) -> UnitOfWork: ...

    @property
    def oauth(self) -> OAuthClient: ...

    @property
    def cipher(self) -> Cipher: ...

    @property
    def pkce(self) -> bool:
        """Send a PKCE challenge with every authorization request."""

    @property
    def state_ttl_s(self) -> float: ...

    @property
    def notify(self) -> Callable[[], None]:
        """Wakes the outbox relay after a commit that queued a command."""
