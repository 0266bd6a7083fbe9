"""The mapping service's tables as one connection sees them (`PgMappingStore`), and the unit of work that opens it
(`PgUnitOfWork`): what the use cases are given as `ports.MappingStore` / `ports.UnitOfWork`. Each method is the
adapter function of its table group; the SQL stays there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from services.mapping.adapters import (
    bindings,
    changes,
    mappings,
    outcomes,
    procore_entities,
    procore_links,
    references,
    setups,
    sync_jobs,
)
from services.mapping.adapters.bindings import Binding, StoredAttempt
from services.mapping.adapters.changes import Change
from services.mapping.adapters.mappings import StoredMapping
from services.mapping.adapters.procore_entities import KnownEntity, SyncDiff, SyncedEntity
from services.mapping.adapters.procore_links import StoredProcoreLink, TokenCipher
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
from shared.outbox import OutboxMessage, add_to_outbox, trace_headers
from shared.procore import OAuthTokens


class PgMappingStore:
    """One connection (the caller owns its transaction), the cipher of the stored secrets, and where changes go."""

    def __init__(self, db: asyncpg.Connection, cipher: TokenCipher, changes_topic: str, commands_topic: str) -> None:
        self.db = db
        self._cipher = cipher
        self._changes_topic = changes_topic
        self._commands_topic = commands_topic

    # --- setups -----------------------------------------------------------------------------

    async def lock_account(self, account_id: str) -> None:
        await setups.lock_account(self.db, account_id)

    async def read_setup(self, account_id: str) -> StoredSetup | None:
        return await setups.read_setup(self.db, account_id)

    async def save_setup(
        self,
        account_id: str,
        company_id: int | None,
        modules: Sequence[Module],
        two_way: bool,
        updated_by: str | None,
        auto_publish: Mapping[Module, int] | None = None,
    ) -> None:
        await setups.save_setup(self.db, account_id, company_id, modules, two_way, updated_by, auto_publish)

    async def is_two_way(self, account_id: str) -> bool:
        return await setups.is_two_way(self.db, account_id)

    # --- bindings ---------------------------------------------------------------------------

    async def holder_of(self, company_id: int) -> str | None:
        return await bindings.holder_of(self.db, company_id)

    async def holders(self, company_ids: Sequence[int]) -> dict[int, str]:
        return await bindings.holders(self.db, company_ids)

    async def bind(
        self, account_id: str, companies: Sequence[ReachedCompany], proof: Proof, connect_command: UUID, bound_by: str
    ) -> list[int]:
        return await bindings.bind(self.db, account_id, companies, proof, connect_command, bound_by)

    async def rename(self, account_id: str, companies: Sequence[ReachedCompany]) -> None:
        await bindings.rename(self.db, account_id, companies)

    async def unbind(self, account_id: str, company_id: int) -> Binding | None:
        return await bindings.unbind(self.db, account_id, company_id)

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
        await bindings.save_attempt(
            self.db, state_hash, browser_hash, account_id, requested_by, permissions, redirect_uri, code_verifier, ttl_s
        )

    async def use_attempt(self, state_hash: bytes) -> tuple[StoredAttempt, datetime] | None:
        return await bindings.use_attempt(self.db, state_hash)

    # --- Procore links ----------------------------------------------------------------------

    async def read_procore_link(self, account_id: str) -> StoredProcoreLink | None:
        return await procore_links.read(self.db, self._cipher, account_id)

    async def lock_procore_link(self, account_id: str) -> StoredProcoreLink | None:
        return await procore_links.lock(self.db, self._cipher, account_id)

    async def set_link_status(self, account_id: str, status: ConnectionStatus, message: str | None) -> None:
        await procore_links.set_status(self.db, account_id, status, message)

    async def link_status(self, account_id: str) -> ConnectionStatus | None:
        return await procore_links.status_of(self.db, account_id)

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
        await procore_links.save_new(
            self.db, self._cipher, account_id, grant_type, tokens, connected_by, connect_command, client, client_company
        )

    # --- mappings ---------------------------------------------------------------------------

    async def mappings_of_entity(
        self, account_id: str, entity: ProcoreEntity, project_id: int | None = None
    ) -> list[StoredMapping]:
        return await mappings.mappings_of_entity(self.db, account_id, entity, project_id)

    async def all_mappings(self, account_id: str) -> list[StoredMapping]:
        return await mappings.all_mappings(self.db, account_id)

    async def holders_of(
        self, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
    ) -> list[str]:
        return await mappings.holders_of(self.db, account_id, entity, project_id, procore_id)

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
        return await mappings.set_mapping(
            self.db, account_id, entity, mobiclocks_id, project_id, procore_id, source, updated_by
        )

    async def mark_broken(
        self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
    ) -> list[StoredMapping]:
        return await mappings.mark_broken(self.db, account_id, entity, project_id, procore_ids)

    async def restore_broken(
        self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
    ) -> list[StoredMapping]:
        return await mappings.restore_broken(self.db, account_id, entity, project_id, procore_ids)

    async def working_mappings_to(
        self, account_id: str, entity: ProcoreEntity, project_id: int, procore_ids: Sequence[int]
    ) -> list[StoredMapping]:
        return await mappings.working_mappings_to(self.db, account_id, entity, project_id, procore_ids)

    async def delete_account_mappings(self, account_id: str) -> list[StoredMapping]:
        return await mappings.delete_account_mappings(self.db, account_id)

    async def mapped_project_ids(self, account_id: str) -> list[int]:
        return await mappings.mapped_project_ids(self.db, account_id)

    # --- synced Procore lists ---------------------------------------------------------------

    async def apply_sync(
        self, account_id: str, entity: ProcoreEntity, project_id: int, items: Sequence[SyncedEntity]
    ) -> SyncDiff:
        return await procore_entities.apply_sync(self.db, account_id, entity, project_id, items)

    async def procore_entity(
        self, account_id: str, entity: ProcoreEntity, project_id: int | None, procore_id: int
    ) -> KnownEntity | None:
        return await procore_entities.procore_entity(self.db, account_id, entity, project_id, procore_id)

    async def procore_rows(self, account_id: str, entity: ProcoreEntity, project_id: int) -> list[ProcoreRow]:
        return await procore_entities.procore_rows(self.db, account_id, entity, project_id)

    async def project_of_cost_code(self, account_id: str, procore_id: int) -> int | None:
        return await procore_entities.project_of_cost_code(self.db, account_id, procore_id)

    async def was_synced(self, account_id: str, entity: ProcoreEntity, project_id: int) -> bool:
        return await procore_entities.was_synced(self.db, account_id, entity, project_id)

    async def forget_procore_entities(self, account_id: str) -> None:
        await procore_entities.forget_procore_entities(self.db, account_id)

    async def replace_directories(self, account_id: str, directories: dict[int, list[int]]) -> None:
        await procore_entities.replace_directories(self.db, account_id, directories)

    # --- MobiClocks references --------------------------------------------------------------

    async def save_reference(self, event: ReferenceUpserted | ReferenceDeleted) -> None:
        await references.save_reference(self.db, event)

    async def reference_rows(self, account_id: str, kind: ReferenceKind) -> list[MobiClocksRow]:
        return await references.reference_rows(self.db, account_id, kind)

    async def linked_references(self, account_id: str) -> list[tuple[ReferenceKind, str, int, str]]:
        return await references.linked_references(self.db, account_id)

    async def reference_name(self, account_id: str, kind: ReferenceKind, entity_id: str) -> str | None:
        return await references.reference_name(self.db, account_id, kind, entity_id)

    # --- outcomes ---------------------------------------------------------------------------

    async def is_finished(self, command_id: UUID) -> bool:
        return await outcomes.is_finished(self.db, command_id)

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
        return await outcomes.record_outcome(
            self.db, command_id, account_id, command_type, status, message, details, requested_by, changes
        )

    async def save_automap_report(
        self,
        account_id: str,
        entity: ProcoreEntity,
        requested_by: str | None,
        overwrite_manual: bool,
        counts: tuple[int, int, int],
        details: list[dict[str, Any]],
    ) -> None:
        await outcomes.save_automap_report(self.db, account_id, entity, requested_by, overwrite_manual, counts, details)

    # --- sync jobs --------------------------------------------------------------------------

    async def enqueue_job(
        self, job_id: UUID, account_id: str, entity: str, command: dict[str, Any], requested_by: str | None
    ) -> bool:
        return await sync_jobs.enqueue(self.db, job_id, account_id, entity, command, requested_by)

    async def has_open_job(self, account_id: str) -> bool:
        return await sync_jobs.has_open(self.db, account_id)

    async def finish_job(self, job_id: UUID, owner: str, state: str, error: str | None) -> None:
        await sync_jobs.finish(self.db, job_id, owner, state, error)

    # --- outbox -----------------------------------------------------------------------------

    async def emit(self, changes_made: Sequence[Change]) -> None:
        await changes.emit(self.db, self._changes_topic, changes_made)

    async def queue_command(self, cmd: CompleteProcoreConnection) -> None:
        message = OutboxMessage(self._commands_topic, cmd.account_id, cmd.model_dump_json(), trace_headers())
        await add_to_outbox(self.db, [message])


class PgUnitOfWork:
    """Opens a `PgMappingStore` on a connection of the pool."""

    def __init__(self, pool: asyncpg.Pool, cipher: TokenCipher, changes_topic: str, commands_topic: str) -> None:
        self._pool = pool
        self._cipher = cipher
        self._topics = (changes_topic, commands_topic)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[PgMappingStore]:
        async with self._pool.acquire() as db:
            yield PgMappingStore(db, self._cipher, *self._topics)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgMappingStore]:
        async with self._pool.acquire() as db, db.transaction():
            yield PgMappingStore(db, self._cipher, *self._topics)
