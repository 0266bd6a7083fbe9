"""The aggregator's tables as one connection inside one transaction sees them: what the handlers that take a store
are given (they name the part they use as a Protocol; unit tests give them an in-memory fake). Each method is the
adapter function of its table group; the SQL stays there."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg
from asyncpg.transaction import Transaction

from services.aggregator.adapters import (
    entries,
    history,
    locks,
    members,
    publish_requests,
    remap_marks,
    replica,
    timelogs,
)
from services.aggregator.adapters.entries import EntryUpdate, LockedEntry, NewEntryRows, StoredEntry
from services.aggregator.adapters.history import HistoryRow
from services.aggregator.adapters.publish_requests import DuePublish, QueuedPublish
from services.aggregator.adapters.remap_marks import Mark, MarkedEntry, PendingMarks
from services.aggregator.adapters.replica import AccountMappings
from services.aggregator.adapters.timelogs import Group, StoredTimelog
from services.aggregator.domain import EntryRef, EntryState, Totals
from shared.events import Module, ProcoreEntity, PublishEntries, ReferenceKind, TimelogDeleted, TimelogUpserted
from shared.outbox import OutboxMessage, add_to_outbox


class Store:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock_entries_in_scope(self, cmd: PublishEntries) -> list[StoredEntry]:
        return await entries.lock_entries_in_scope(self.conn, cmd)

    async def lock_entry(self, entry_id: uuid.UUID) -> StoredEntry | None:
        return await entries.lock_entry(self.conn, entry_id)

    async def lock_entries_of_procore_record(
        self, account_id: str, module: Module, procore_id: int
    ) -> list[StoredEntry]:
        return await entries.lock_entries_of_procore_record(self.conn, account_id, module, procore_id)

    async def save_entries(self, changed: Sequence[StoredEntry]) -> None:
        await entries.save_entries(self.conn, changed)

    async def delete_entries(self, entry_ids: Sequence[uuid.UUID]) -> None:
        await entries.delete_entries(self.conn, entry_ids)

    async def add_history(self, rows: Sequence[HistoryRow]) -> None:
        await history.add_history(self.conn, rows)

    async def forget_publish_requests(self, requests: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
        await publish_requests.forget_publish_requests(self.conn, requests)

    async def save_reference_name(
        self, account_id: str, kind: ReferenceKind, entity_id: str, name: str | None, number: str | None
    ) -> None:
        await replica.save_reference_name(self.conn, account_id, kind, entity_id, name, number)

    async def has_remap_marks(self, account_id: str) -> bool:
        return await remap_marks.has_remap_marks(self.conn, account_id)

    async def load_account_mappings(self, account_id: str) -> AccountMappings:
        return await replica.load_account_mappings(self.conn, account_id)

    async def timelog_ids_of(self, of: Sequence[StoredEntry]) -> list[frozenset[str]]:
        return await members.timelog_ids_of(self.conn, of)

    async def clock_spans_of(
        self, account_id: str, of: Sequence[frozenset[str]]
    ) -> list[list[tuple[datetime | None, datetime | None]]]:
        return await members.clock_spans_of(self.conn, account_id, of)

    async def queue_messages(self, messages: Sequence[OutboxMessage]) -> None:
        """Into the transactional outbox: sent once this transaction commits."""
        await add_to_outbox(self.conn, messages)

    async def keep_publish_requests(self, queued: Sequence[QueuedPublish], redrive_after_s: float) -> None:
        await publish_requests.keep_publish_requests(self.conn, queued, redrive_after_s)

    async def claim_auto_publish(self, limit: int) -> list[tuple[str, Module, list[uuid.UUID]]]:
        return await publish_requests.claim_auto_publish(self.conn, limit)

    async def claim_due_publishes(self, limit: int) -> list[DuePublish]:
        return await publish_requests.claim_due_publishes(self.conn, limit)

    async def publishes_redriven(self, redriven: Sequence[tuple[uuid.UUID, OutboxMessage, float]]) -> None:
        await publish_requests.publishes_redriven(self.conn, redriven)

    # --- timelog batches, recomputes and remaps (handlers/timelogs.py, handlers/remap.py) ---

    def is_closed(self) -> bool:
        return self.conn.is_closed()

    def transaction(self) -> Transaction:
        """A transaction on this connection (a remap round runs one per chunk)."""
        return self.conn.transaction()

    async def insert_new_timelogs(self, events: Sequence[TimelogUpserted | TimelogDeleted]) -> set[tuple[str, str]]:
        return await timelogs.insert_new_timelogs(self.conn, events)

    async def lock_timelogs(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredTimelog]:
        return await timelogs.lock_timelogs(self.conn, keys)

    async def upsert_timelogs(self, events: Sequence[TimelogUpserted | TimelogDeleted]) -> None:
        await timelogs.upsert_timelogs(self.conn, events)

    async def totals_of_groups(
        self, groups: Iterable[Group], modules: Iterable[Module]
    ) -> dict[tuple[str, EntryRef], Totals]:
        return await timelogs.totals_of_groups(self.conn, groups, modules)

    async def changed_totals_of_groups(
        self, groups: Iterable[Group], modules: Iterable[Module]
    ) -> list[tuple[str, EntryRef, Totals, uuid.UUID | None]]:
        return await timelogs.changed_totals_of_groups(self.conn, groups, modules)

    async def groups_of_account(self, account_id: str) -> list[Group]:
        return await timelogs.groups_of_account(self.conn, account_id)

    async def lock_entries_by_id(self, entry_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, LockedEntry]:
        return await entries.lock_entries_by_id(self.conn, entry_ids)

    async def lock_entries_published_with(
        self, account_ids: Sequence[str], timelog_ids: Sequence[str]
    ) -> list[StoredEntry]:
        return await entries.lock_entries_published_with(self.conn, account_ids, timelog_ids)

    async def lock_entries_of_groups(self, groups: Iterable[Group]) -> list[tuple[str, EntryRef, LockedEntry]]:
        return await entries.lock_entries_of_groups(self.conn, groups)

    async def create_entries(self, rows: NewEntryRows) -> set[uuid.UUID]:
        return await entries.create_entries(self.conn, rows)

    async def update_entry_totals(self, updates: Sequence[EntryUpdate]) -> None:
        await entries.update_entry_totals(self.conn, updates)

    async def load_members(self, of: dict[uuid.UUID, LockedEntry]) -> None:
        await members.load_members(self.conn, of)

    async def save_member_changes(self, changes: Sequence[tuple[uuid.UUID, str, int]]) -> None:
        await members.save_member_changes(self.conn, changes)

    async def load_setups(self, account_ids: Sequence[str]) -> dict[str, AccountMappings]:
        return await replica.load_setups(self.conn, account_ids)

    async def load_mappings_for(
        self, accounts: dict[str, AccountMappings], ids: set[tuple[str, str, str]], names: set[tuple[str, str, str]]
    ) -> None:
        await replica.load_mappings_for(self.conn, accounts, ids, names)

    async def save_setup(
        self,
        account_id: str,
        company_id: int | None,
        modules: Sequence[Module],
        two_way: bool,
        auto_publish: dict[Module, int] | None = None,
    ) -> None:
        await replica.save_setup(self.conn, account_id, company_id, modules, two_way, auto_publish)

    async def save_mapping(
        self,
        account_id: str,
        entity: ProcoreEntity,
        mobiclocks_id: str,
        project_id: int | None,
        procore_id: int | None,
        procore_name: str | None,
        broken_reason: str | None = None,
    ) -> None:
        await replica.save_mapping(
            self.conn, account_id, entity, mobiclocks_id, project_id, procore_id, procore_name, broken_reason
        )

    async def lock_accounts_shared(self, accounts: Sequence[str]) -> None:
        await locks.lock_accounts_shared(self.conn, accounts)

    async def lock_account(self, account_id: str) -> None:
        await locks.lock_account(self.conn, account_id)

    async def try_lock_remap(self, account_id: str) -> bool:
        return await locks.try_lock_remap(self.conn, account_id)

    async def unlock_remap(self, account_id: str) -> None:
        await locks.unlock_remap(self.conn, account_id)

    async def batches_of_account(self, account_id: str) -> list[str]:
        return await locks.batches_of_account(self.conn, account_id)

    async def still_running(self, transactions: Sequence[str]) -> bool:
        return await locks.still_running(self.conn, transactions)

    async def database_now(
        self,
    ) -> datetime:
        return await locks.database_now(
            self.conn,
        )

    async def mark_for_remap(self, account_id: str, marks: Sequence[Mark]) -> None:
        await remap_marks.mark_for_remap(self.conn, account_id, marks)

    async def pending_marks(self, account_id: str) -> PendingMarks | None:
        return await remap_marks.pending_marks(self.conn, account_id)

    async def forget_marks(self, account_id: str, up_to_seq: int) -> None:
        await remap_marks.forget_marks(self.conn, account_id, up_to_seq)

    async def groups_marked(self, account_id: str, marks: Sequence[Mark]) -> list[tuple[Group, int]]:
        return await remap_marks.groups_marked(self.conn, account_id, marks)

    async def record_remap_round(
        self, account_id: str, marks: int, groups: int, chunks: int, first: datetime, started: datetime
    ) -> None:
        await remap_marks.record_remap_round(self.conn, account_id, marks, groups, chunks, first, started)

    async def lock_marked_entries(
        self, account_id: str, groups: Sequence[Group], marks: Sequence[Mark], modules: Iterable[Module]
    ) -> list[MarkedEntry]:
        return await remap_marks.lock_marked_entries(self.conn, account_id, groups, marks, modules)

    async def save_entry_errors(self, states: Sequence[tuple[uuid.UUID, EntryState]]) -> None:
        await remap_marks.save_entry_errors(self.conn, states)
