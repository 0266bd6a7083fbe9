"""Aggregator use cases. Each takes a connection inside a transaction the caller opened."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

import asyncpg
from opentelemetry import propagate

from services.aggregator import domain
from services.aggregator.adapters import repository as repo
from services.aggregator.adapters.repository import AccountMappings, Group, StoredEntry
from shared.events import (
    MappingChange,
    MappingChanged,
    Module,
    ProcoreOperation,
    ProcorePublishFinished,
    PublishEntries,
    PublishToProcore,
    ReferenceDeleted,
    ReferenceUpserted,
    SetupChanged,
    TimelogDeleted,
    TimelogUpserted,
)
from shared.topics import Topics

log = logging.getLogger(__name__)

TimelogChange = TimelogUpserted | TimelogDeleted


def newest_per_timelog(events: Iterable[TimelogChange]) -> list[TimelogChange]:
    """Within a batch only the highest revision of each timelog matters."""
    best: dict[tuple[str, str], TimelogChange] = {}
    for e in events:
        key = (e.account_id, e.timelog_id)
        if key not in best or e.revision > best[key].revision:
            best[key] = e
    return list(best.values())


async def apply_timelog_events(conn: asyncpg.Connection, events: Sequence[TimelogChange]) -> int:
    """Store newer timelog revisions and recompute every (job site, day) they leave or enter."""
    batch = newest_per_timelog(events)
    if not batch:
        return 0
    stored = await repo.lock_timelog_revisions(conn, [e.account_id for e in batch], [e.timelog_id for e in batch])
    fresh: list[TimelogChange] = []
    groups: set[Group] = set()
    for e in batch:
        previous = stored.get((e.account_id, e.timelog_id))
        if previous is not None and previous[0] >= e.revision:
            continue  # stale or duplicate delivery
        fresh.append(e)
        if previous is not None and previous[1] is not None and previous[2] is not None:
            groups.add((e.account_id, previous[1], previous[2]))
        if isinstance(e, TimelogUpserted):
            groups.add((e.account_id, e.job_site_id, e.work_date))
    if not fresh:
        return 0
    await repo.upsert_timelogs(conn, fresh)
    await recompute_groups(conn, groups)
    return len(fresh)


async def recompute_groups(conn: asyncpg.Connection, groups: Iterable[Group]) -> None:
    """Make the entries of these groups equal a from-scratch aggregation of their timelogs."""
    by_account: dict[str, set[Group]] = defaultdict(set)
    for g in groups:
        by_account[g[0]].add(g)
    for account_id in sorted(by_account):
        mappings = await repo.load_account_mappings(conn, account_id)
        await _recompute_account_groups(conn, account_id, by_account[account_id], mappings)


async def _recompute_account_groups(
    conn: asyncpg.Connection, account_id: str, groups: set[Group], mappings: AccountMappings
) -> None:
    existing = {(e.module, e.entry_key): e for e in await repo.lock_entries_of_groups(conn, groups)}
    timelogs = await repo.timelogs_of_groups(conn, groups)
    fresh: dict[tuple[Module, str], domain.Aggregate] = {}
    for group_timelogs in timelogs.values():
        fresh.update(domain.aggregate(group_timelogs, mappings.enabled_modules))

    published_ids: set[str] = set()
    for e in existing.values():
        if e.state.published_timelog_ids:
            published_ids |= e.state.published_timelog_ids
    tombstoned = await repo.deleted_timelog_ids(conn, account_id, published_ids)

    to_save: list[StoredEntry] = []
    to_delete: list[uuid.UUID] = []
    for key in existing.keys() | fresh.keys():
        old, agg = existing.get(key), fresh.get(key)
        if old is None:
            assert agg is not None
            dims = dict(agg.dims)
            content = dict(agg.content)
            errors = domain.validate(agg.module, agg.job_site_id, dims, content, mappings)
            to_save.append(
                StoredEntry(
                    entry_id=domain.entry_id(account_id, agg.module, agg.entry_key),
                    account_id=account_id,
                    module=agg.module,
                    job_site_id=agg.job_site_id,
                    work_date=agg.work_date,
                    entry_key=agg.entry_key,
                    dims=dims,
                    content=content,
                    state=domain.new_entry(agg.fingerprint, agg.timelog_ids, errors),
                    procore_updated_at=None,
                    published_payload=None,
                )
            )
            continue
        current: dict[str, str] | None = None
        fp: str | None = None
        ids: frozenset[str] = frozenset()
        if agg is not None:
            current, fp, ids = dict(agg.content), agg.fingerprint, agg.timelog_ids
        deleted = frozenset((old.state.published_timelog_ids or frozenset()) - ids) & tombstoned
        if old.module not in mappings.enabled_modules and not old.state.ever_published:
            fp, current, ids = None, None, frozenset()
        state = domain.content_changed(old.state, fp, ids, deleted)
        if state is not None and current is not None:
            state = domain.errors_changed(
                state, domain.validate(old.module, old.job_site_id, old.dims, current, mappings)
            )
        if state is None:
            to_delete.append(old.entry_id)
        elif state != old.state or current != old.content:
            to_save.append(replace(old, state=state, content=current))
    await repo.delete_entries(conn, to_delete)
    await repo.save_entries(conn, to_save)


async def revalidate_account(conn: asyncpg.Connection, account_id: str) -> None:
    """Mapping or setup changed: rebuild the account's entries and re-check their mappings."""
    groups = await repo.groups_of_account(conn, account_id)
    if groups:
        await recompute_groups(conn, groups)


async def apply_mapping_change(conn: asyncpg.Connection, change: MappingChange) -> None:
    if isinstance(change, SetupChanged):
        await repo.save_setup(
            conn, change.account_id, change.procore_company_id, change.enabled_modules, change.two_way
        )
    elif isinstance(change, MappingChanged):
        await repo.save_mapping(
            conn,
            change.account_id,
            change.entity,
            change.mobiclocks_id,
            change.procore_project_id,
            change.procore_id,
            change.procore_name,
        )
    await revalidate_account(conn, change.account_id)


async def apply_reference_event(conn: asyncpg.Connection, event: ReferenceUpserted | ReferenceDeleted) -> None:
    """Names are kept only to word the Non publishable errors."""
    if isinstance(event, ReferenceUpserted):
        await repo.save_reference_name(conn, event.account_id, event.kind, event.entity_id, event.name, event.number)
    else:
        await repo.save_reference_name(conn, event.account_id, event.kind, event.entity_id, None, None)


# --- publishing -------------------------------------------------------------------------


def _scope_filter(cmd: PublishEntries) -> tuple[str, list[object]]:
    scope = cmd.scope
    base = "account_id = $1 AND module = $2"
    args: list[object] = [cmd.account_id, cmd.module.value]
    if scope.kind == "cell":
        return f"{base} AND job_site_id = $3 AND work_date = $4", [*args, scope.job_site_id, scope.work_date]
    if scope.kind == "entries":
        return f"{base} AND entry_id = ANY($3::uuid[])", [*args, list(scope.entry_ids)]
    return f"{base} AND work_date BETWEEN $3 AND $4", [*args, scope.date_from, scope.date_to]


def _trace_headers() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


async def publish_entries(conn: asyncpg.Connection, cmd: PublishEntries, topics: Topics) -> int:
    """Move eligible entries to Publishing and queue one publish request each (transactional outbox)."""
    where, args = _scope_filter(cmd)
    entries = await repo.lock_entries(conn, where, *args)
    if not entries:
        return 0
    mappings = await repo.load_account_mappings(conn, cmd.account_id)
    if mappings.procore_company_id is None:
        log.warning("account %s asked to publish but has no Procore company", cmd.account_id)
        return 0
    headers = _trace_headers()
    to_save: list[StoredEntry] = []
    outbox: list[tuple[str, str, str, dict[str, str]]] = []
    history: list[tuple[uuid.UUID, uuid.UUID | None, str, str | None, str | None, str | None]] = []
    force = cmd.action.value == "force_publish"
    for e in entries:
        request_id = uuid.uuid4()
        moved = domain.publish_requested(e.state, cmd.action, request_id)
        if moved is None:
            continue
        state, operation = moved
        project = mappings.procore_id(domain.ProcoreEntity.PROJECT, e.job_site_id)
        if project is None:
            continue
        payload = {}
        if operation is not ProcoreOperation.DELETE and e.content is not None:
            payload = domain.procore_payload(
                e.module, e.entry_id, e.work_date, e.job_site_id, e.dims, e.content, mappings
            )
        request = PublishToProcore(
            account_id=e.account_id,
            request_id=request_id,
            entry_id=e.entry_id,
            entry_version=state.version,
            module=e.module,
            operation=operation,
            procore_company_id=mappings.procore_company_id,
            procore_project_id=project,
            work_date=e.work_date,
            payload=payload,
            marker=domain.marker_for(e.entry_id),
            procore_id=state.procore_id,
            published_updated_at=e.procore_updated_at,
            published_payload=e.published_payload,
            force=force,
        )
        outbox.append((topics.publish_requests, f"{e.account_id}:{e.job_site_id}", request.model_dump_json(), headers))
        to_save.append(replace(e, state=state))
        history.append((e.entry_id, request_id, cmd.action.value, cmd.requested_by, None, operation.value))
    await repo.save_entries(conn, to_save)
    await repo.add_to_outbox(conn, outbox)
    await repo.add_history(conn, history)
    return len(to_save)


async def apply_publish_result(conn: asyncpg.Connection, result: ProcorePublishFinished) -> bool:
    """Store what the publisher did; results of any request but an entry's current one change nothing."""
    found = await repo.lock_entries(conn, "entry_id = $1", result.entry_id)
    if not found:
        return False
    entry = found[0]
    state = domain.result_arrived(entry.state, result.request_id, result.outcome, result.procore_id, result.message)
    if state is entry.state:
        return False
    await repo.add_history(
        conn, [(entry.entry_id, result.request_id, "result", None, result.outcome.value, result.message)]
    )
    if state is None:
        await repo.delete_entries(conn, [entry.entry_id])
        return True
    published = result.outcome.value in ("published", "deleted")
    await repo.save_entries(
        conn,
        [
            replace(
                entry,
                state=state,
                procore_updated_at=result.procore_updated_at if published else entry.procore_updated_at,
                published_payload=result.published_payload if published else entry.published_payload,
            )
        ],
    )
    return True
