"""Mapping and setup changes: kept, marked for the debounced remap, and the remap rounds that re-check the marked
entries."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Protocol

from services.aggregator import domain
from services.aggregator.adapters.remap_marks import Mark, MarkedEntry, PendingMarks
from services.aggregator.adapters.timelogs import Group
from services.aggregator.handlers.timelogs import TimelogTables, Validator, recompute_groups, revalidate_account
from shared.events import (
    MappingChange,
    MappingChanged,
    Module,
    ProcoreEntity,
    SetupChanged,
)
from shared.transient import is_transient

log = logging.getLogger(__name__)


class RemapTables(TimelogTables, Protocol):
    """The tables mapping changes and remap rounds work on (`adapters.store.Store`): a remap round runs on a
    connection of its own, outside a transaction, and opens one per chunk (`transaction()`)."""

    def transaction(self) -> AbstractAsyncContextManager[object]: ...
    def is_closed(self) -> bool: ...
    async def save_setup(
        self,
        account_id: str,
        company_id: int | None,
        modules: Sequence[Module],
        two_way: bool,
        auto_publish: dict[Module, int] | None = None,
    ) -> None: ...
    async def save_mapping(
        self,
        account_id: str,
        entity: ProcoreEntity,
        mobiclocks_id: str,
        project_id: int | None,
        procore_id: int | None,
        procore_name: str | None,
        broken_reason: str | None = None,
    ) -> None: ...
    async def mark_for_remap(self, account_id: str, marks: Sequence[Mark]) -> None: ...
    async def pending_marks(self, account_id: str) -> PendingMarks | None: ...
    async def groups_marked(self, account_id: str, marks: Sequence[Mark]) -> list[tuple[Group, int]]: ...
    async def forget_marks(self, account_id: str, up_to_seq: int) -> None: ...
    async def lock_marked_entries(
        self, account_id: str, groups: Sequence[Group], marks: Sequence[Mark], modules: Iterable[Module]
    ) -> list[MarkedEntry]: ...
    async def save_entry_errors(self, states: Sequence[tuple[uuid.UUID, domain.EntryState]]) -> None: ...
    async def try_lock_remap(self, account_id: str) -> bool: ...
    async def unlock_remap(self, account_id: str) -> None: ...
    async def database_now(self) -> datetime: ...
    async def batches_of_account(self, account_id: str) -> list[str]: ...
    async def still_running(self, transactions: Sequence[str]) -> bool: ...
    async def record_remap_round(
        self, account_id: str, marks: int, groups: int, chunks: int, first: datetime, started: datetime
    ) -> None: ...


async def record_mapping_change(tables: RemapTables, change: MappingChange) -> None:
    """Keep the setup or mapping and mark the entries it affects for the debounced remap (`remap_round`): a
    thousand mapping changes of one account cost a thousand small writes here and one recompute later.

    A change of the enabled modules still recomputes the account at once, under its exclusive lock: timelog
    batches that already see the new setup must find the new module's entries complete."""
    if isinstance(change, SetupChanged):
        old = (await tables.load_setups([change.account_id]))[change.account_id]
        await tables.save_setup(
            change.account_id,
            change.procore_company_id,
            change.enabled_modules,
            change.two_way,
            change.auto_publish,
        )
        effect = domain.setup_effect(
            old.enabled_modules, old.procore_company_id, change.enabled_modules, change.procore_company_id
        )
        if effect is domain.SetupEffect.REBUILD:
            await revalidate_account(tables, change.account_id)
        elif effect is domain.SetupEffect.REVALIDATE:
            await tables.mark_for_remap(change.account_id, [domain.EVERY_ENTRY])
    elif isinstance(change, MappingChanged):
        await tables.save_mapping(
            change.account_id,
            change.entity,
            change.mobiclocks_id,
            change.procore_project_id,
            change.procore_id,
            change.procore_name,
            change.broken_reason,
        )
        await tables.mark_for_remap(change.account_id, [domain.remap_mark(change.entity, change.mobiclocks_id)])


async def apply_mapping_change(tables: RemapTables, change: MappingChange) -> None:
    """`record_mapping_change` and its remap at once, in this transaction (tools and tests; the service debounces)."""
    await record_mapping_change(tables, change)
    await remap_now(tables, change.account_id)


async def remap_now(tables: RemapTables, account_id: str) -> int:
    """Recompute the account's marked groups from scratch in this transaction, under the account's exclusive lock;
    returns how many groups."""
    await tables.lock_account(account_id)
    pending = await tables.pending_marks(account_id)
    if pending is None:
        return 0
    groups = [group for group, _ in await tables.groups_marked(account_id, pending.marks)]
    if groups:
        await recompute_groups(tables, groups)
    await tables.forget_marks(account_id, pending.up_to_seq)
    return len(groups)


async def revalidate_groups(
    tables: RemapTables, account_id: str, groups: Sequence[Group], marks: Sequence[Mark]
) -> int:
    """Re-check, against the mappings now, the errors of the entries of these groups that the marks name (a remap
    round's chunk); returns how many entries changed.

    Only row locks on these entries: a mapping change leaves every entry's totals and content right, so no account
    lock is needed and timelog batches (of this account too) go on; one that writes an entry here waits for this
    chunk, or this chunk for it, and then reads what the other wrote."""
    views = await tables.load_setups([account_id])
    marked = await tables.lock_marked_entries(account_id, groups, marks, views[account_id].enabled_modules)
    await tables.load_mappings_for(views, *domain.mapping_needs_of((account_id, e.ref) for e in marked))
    validator = Validator(views)
    changed: list[tuple[uuid.UUID, domain.EntryState]] = []
    for e in marked:
        state = domain.errors_changed(e.state, validator.errors(account_id, e.ref, e.content))
        if state is not None and state != e.state:
            changed.append((e.entry_id, state))
    await tables.save_entry_errors(changed)
    return len(changed)


@dataclass(frozen=True)
class RemapPolicy:
    """When and how an account's marked entries are re-checked (see `remap_round`)."""

    quiet_s: float = 1.0
    """A round starts once the account's marks have been quiet this long…"""
    max_delay_s: float = 10.0
    """…or its oldest mark has waited this long (a stream of changes that never pauses)."""
    chunk_entries: int = 2000
    """Entries per transaction at most (whole (job site, day) groups): bounds how long one chunk holds its entries'
    row locks and the event loop."""
    chunk_attempts: int = 5
    """A chunk that fails transiently (a deadlock with a batch) is tried again this many times."""
    batch_wait_s: float = 0.05
    """How often the round looks whether the batches it waits for have ended."""


@dataclass(frozen=True)
class RemapRound:
    account_id: str
    marks: int
    groups: int
    chunks: int


async def remap_round(tables: RemapTables, account_id: str, policy: RemapPolicy = RemapPolicy()) -> RemapRound | None:
    """One debounced remap of an account, on a connection of its own (not in a transaction): None when another
    instance is remapping this account or nothing is marked.

    1. A session lock makes it the account's only round over every instance (a crashed one's lock goes with its
       session). 2. It reads the marks and waits for the timelog batches of this account that were running (seen
       in pg_locks, no lock taken): one that started before the marks were made may have validated entries
       against the old mappings; any later batch reads the new ones. 3. It finds the marked groups (one
       statement) and re-checks their entries in chunks of at most `chunk_entries` entries, one short transaction each.
    4. Only then does it delete the marks it read (a mark made again since stays) and record the round: a round
    cut short leaves every mark for the next one, which redoes it (re-checking is idempotent)."""
    if not await tables.try_lock_remap(account_id):
        return None
    try:
        started = await tables.database_now()
        pending = await tables.pending_marks(account_id)
        if pending is None:
            return None
        running = await tables.batches_of_account(account_id)
        while running and await tables.still_running(running):  # noqa: ASYNC110 - polling pg_locks
            await asyncio.sleep(policy.batch_wait_s)
        sizes = await tables.groups_marked(account_id, pending.marks)
        chunks = domain.chunked(sizes, policy.chunk_entries)
        for chunk in chunks:
            work = partial(revalidate_groups, account_id=account_id, groups=chunk, marks=pending.marks)
            await _with_retries(tables, work, policy)
        async with tables.transaction():
            await tables.forget_marks(account_id, pending.up_to_seq)
            await tables.record_remap_round(
                account_id, len(pending.marks), len(sizes), len(chunks), pending.first_marked_at, started
            )
        return RemapRound(account_id, len(pending.marks), len(sizes), len(chunks))
    finally:
        await tables.unlock_remap(account_id)


async def _with_retries(
    tables: RemapTables, work: Callable[[RemapTables], Awaitable[object]], policy: RemapPolicy
) -> None:
    for attempt in range(1, policy.chunk_attempts + 1):
        try:
            async with tables.transaction():
                await work(tables)
            return
        except Exception as error:
            if attempt == policy.chunk_attempts or not is_transient(error) or tables.is_closed():
                raise
            await asyncio.sleep(0.05 * attempt)
