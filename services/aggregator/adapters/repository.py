"""PostgreSQL access for the aggregator. Takes a connection; the caller owns the transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.aggregator.domain import EntryState, Status, Timelog
from shared.events import Module, ProcoreEntity, ReferenceKind, TimelogDeleted, TimelogUpserted

Group = tuple[str, str, date]  # (account_id, job_site_id, work_date)


@dataclass(frozen=True)
class StoredEntry:
    entry_id: uuid.UUID
    account_id: str
    module: Module
    job_site_id: str
    work_date: date
    entry_key: str
    dims: dict[str, str | None]
    content: dict[str, str] | None
    state: EntryState
    procore_updated_at: datetime | None
    published_payload: dict[str, Any] | None


def _frozen(values: Sequence[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _entry(row: asyncpg.Record) -> StoredEntry:
    state = EntryState(
        status=Status(row["status"]),
        fingerprint=row["fingerprint"],
        timelog_ids=frozenset(row["timelog_ids"]),
        version=row["version"],
        errors=tuple(row["errors"]),
        last_error=row["last_error"],
        procore_id=row["procore_id"],
        published_fingerprint=row["published_fingerprint"],
        published_timelog_ids=_frozen(row["published_timelog_ids"]),
        publishing_request_id=row["publishing_request_id"],
        publishing_fingerprint=row["publishing_fingerprint"],
        publishing_timelog_ids=_frozen(row["publishing_timelog_ids"]),
        deleted_timelog_ids=frozenset(row["deleted_timelog_ids"]),
    )
    return StoredEntry(
        entry_id=row["entry_id"],
        account_id=row["account_id"],
        module=Module(row["module"]),
        job_site_id=row["job_site_id"],
        work_date=row["work_date"],
        entry_key=row["entry_key"],
        dims=row["dims"],
        content=row["content"],
        state=state,
        procore_updated_at=row["procore_updated_at"],
        published_payload=row["published_payload"],
    )


# --- timelogs --------------------------------------------------------------------------


async def lock_timelog_revisions(
    conn: asyncpg.Connection, account_ids: Sequence[str], timelog_ids: Sequence[str]
) -> dict[tuple[str, str], tuple[int, str | None, date | None]]:
    """Stored (revision, job site, day) of the given timelogs, locked for this transaction."""
    rows = await conn.fetch(
        """
        SELECT t.account_id, t.timelog_id, t.revision, t.job_site_id, t.work_date
          FROM timelogs t
          JOIN unnest($1::text[], $2::text[]) AS k(account_id, timelog_id)
            ON t.account_id = k.account_id AND t.timelog_id = k.timelog_id
         ORDER BY t.account_id, t.timelog_id
           FOR UPDATE OF t
        """,
        account_ids,
        timelog_ids,
    )
    return {(r["account_id"], r["timelog_id"]): (r["revision"], r["job_site_id"], r["work_date"]) for r in rows}


async def upsert_timelogs(conn: asyncpg.Connection, events: Sequence[TimelogUpserted | TimelogDeleted]) -> None:
    """Write the newest state of each timelog; a delete leaves a tombstone carrying its revision."""
    rows: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, TimelogUpserted):
            rows.append(
                (
                    e.account_id, e.timelog_id, e.revision, False, e.employee_id, e.company_id, e.crew_tag,
                    e.job_site_id, e.work_date, e.seconds, e.cost_code_id, e.pay_class_id, e.pay_id,
                    json.dumps([[q.cost_code_id, q.unit_of_measure, str(q.units)] for q in e.quantities]),
                )
            )  # fmt: skip
        else:
            rows.append(
                (e.account_id, e.timelog_id, e.revision, True, None, None, None, None, None, None, None, None,
                 None, "[]")
            )  # fmt: skip
    await conn.executemany(
        """
        INSERT INTO timelogs (account_id, timelog_id, revision, deleted, employee_id, company_id, crew_tag,
                              job_site_id, work_date, seconds, cost_code_id, pay_class_id, pay_id, quantities)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::text::jsonb)
        ON CONFLICT (account_id, timelog_id) DO UPDATE SET
            revision = EXCLUDED.revision, deleted = EXCLUDED.deleted, employee_id = EXCLUDED.employee_id,
            company_id = EXCLUDED.company_id, crew_tag = EXCLUDED.crew_tag, job_site_id = EXCLUDED.job_site_id,
            work_date = EXCLUDED.work_date, seconds = EXCLUDED.seconds, cost_code_id = EXCLUDED.cost_code_id,
            pay_class_id = EXCLUDED.pay_class_id, pay_id = EXCLUDED.pay_id, quantities = EXCLUDED.quantities,
            updated_at = now()
        WHERE timelogs.revision < EXCLUDED.revision
        """,
        rows,
    )


async def timelogs_of_groups(conn: asyncpg.Connection, groups: Iterable[Group]) -> dict[Group, list[Timelog]]:
    gs = sorted(set(groups))
    rows = await conn.fetch(
        """
        SELECT t.* FROM timelogs t
          JOIN unnest($1::text[], $2::text[], $3::date[]) AS g(account_id, job_site_id, work_date)
            ON t.account_id = g.account_id AND t.job_site_id = g.job_site_id AND t.work_date = g.work_date
         WHERE NOT t.deleted
        """,
        [g[0] for g in gs],
        [g[1] for g in gs],
        [g[2] for g in gs],
    )
    out: dict[Group, list[Timelog]] = {g: [] for g in gs}
    for r in rows:
        out[(r["account_id"], r["job_site_id"], r["work_date"])].append(
            Timelog(
                timelog_id=r["timelog_id"],
                employee_id=r["employee_id"],
                company_id=r["company_id"],
                crew_tag=r["crew_tag"],
                job_site_id=r["job_site_id"],
                work_date=r["work_date"],
                seconds=r["seconds"],
                cost_code_id=r["cost_code_id"],
                pay_class_id=r["pay_class_id"],
                pay_id=r["pay_id"],
                quantities=tuple((c, u, Decimal(n)) for c, u, n in r["quantities"]),
            )
        )
    return out


async def deleted_timelog_ids(conn: asyncpg.Connection, account_id: str, ids: Iterable[str]) -> frozenset[str]:
    wanted = list(set(ids))
    if not wanted:
        return frozenset()
    rows = await conn.fetch(
        "SELECT timelog_id FROM timelogs WHERE account_id = $1 AND timelog_id = ANY($2::text[]) AND deleted",
        account_id,
        wanted,
    )
    return frozenset(r["timelog_id"] for r in rows)


async def groups_of_account(conn: asyncpg.Connection, account_id: str) -> list[Group]:
    rows = await conn.fetch(
        """
        SELECT DISTINCT job_site_id, work_date FROM timelogs WHERE account_id = $1 AND NOT deleted
        UNION SELECT DISTINCT job_site_id, work_date FROM entries WHERE account_id = $1
        """,
        account_id,
    )
    return [(account_id, r["job_site_id"], r["work_date"]) for r in rows]


async def all_accounts(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT account_id FROM timelogs UNION SELECT account_id FROM entries")
    return [r["account_id"] for r in rows]


# --- entries ---------------------------------------------------------------------------


async def lock_entries_of_groups(conn: asyncpg.Connection, groups: Iterable[Group]) -> list[StoredEntry]:
    gs = sorted(set(groups))
    rows = await conn.fetch(
        """
        SELECT e.* FROM entries e
          JOIN unnest($1::text[], $2::text[], $3::date[]) AS g(account_id, job_site_id, work_date)
            ON e.account_id = g.account_id AND e.job_site_id = g.job_site_id AND e.work_date = g.work_date
         ORDER BY e.entry_id
           FOR UPDATE OF e
        """,
        [g[0] for g in gs],
        [g[1] for g in gs],
        [g[2] for g in gs],
    )
    return [_entry(r) for r in rows]


async def lock_entries(conn: asyncpg.Connection, where: str, *args: Any) -> list[StoredEntry]:
    rows = await conn.fetch(f"SELECT * FROM entries WHERE {where} ORDER BY entry_id FOR UPDATE", *args)
    return [_entry(r) for r in rows]


async def save_entries(conn: asyncpg.Connection, entries: Sequence[StoredEntry]) -> None:
    if not entries:
        return
    await conn.executemany(
        """
        INSERT INTO entries (entry_id, account_id, module, job_site_id, work_date, entry_key, dims, content,
                             fingerprint, timelog_ids, status, version, errors, last_error,
                             published_fingerprint, published_timelog_ids, procore_id, procore_updated_at,
                             published_payload, publishing_request_id, publishing_fingerprint,
                             publishing_timelog_ids, deleted_timelog_ids)
        VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8::text::jsonb, $9, $10, $11, $12, $13::text::jsonb,
                $14, $15, $16, $17, $18, $19::text::jsonb, $20, $21, $22, $23)
        ON CONFLICT (entry_id) DO UPDATE SET
            content = EXCLUDED.content, fingerprint = EXCLUDED.fingerprint, timelog_ids = EXCLUDED.timelog_ids,
            status = EXCLUDED.status, version = EXCLUDED.version, errors = EXCLUDED.errors,
            last_error = EXCLUDED.last_error, published_fingerprint = EXCLUDED.published_fingerprint,
            published_timelog_ids = EXCLUDED.published_timelog_ids, procore_id = EXCLUDED.procore_id,
            procore_updated_at = EXCLUDED.procore_updated_at, published_payload = EXCLUDED.published_payload,
            publishing_request_id = EXCLUDED.publishing_request_id,
            publishing_fingerprint = EXCLUDED.publishing_fingerprint,
            publishing_timelog_ids = EXCLUDED.publishing_timelog_ids,
            deleted_timelog_ids = EXCLUDED.deleted_timelog_ids, updated_at = now()
        """,
        [
            (
                e.entry_id, e.account_id, e.module.value, e.job_site_id, e.work_date, e.entry_key,
                json.dumps(e.dims), None if e.content is None else json.dumps(e.content), e.state.fingerprint,
                sorted(e.state.timelog_ids), e.state.status.value, e.state.version, json.dumps(e.state.errors),
                e.state.last_error, e.state.published_fingerprint,
                None if e.state.published_timelog_ids is None else sorted(e.state.published_timelog_ids),
                e.state.procore_id, e.procore_updated_at,
                None if e.published_payload is None else json.dumps(e.published_payload),
                e.state.publishing_request_id, e.state.publishing_fingerprint,
                None if e.state.publishing_timelog_ids is None else sorted(e.state.publishing_timelog_ids),
                sorted(e.state.deleted_timelog_ids),
            )
            for e in entries
        ],
    )  # fmt: skip


async def delete_entries(conn: asyncpg.Connection, entry_ids: Sequence[uuid.UUID]) -> None:
    if entry_ids:
        await conn.execute("DELETE FROM entries WHERE entry_id = ANY($1::uuid[])", list(entry_ids))


async def add_history(
    conn: asyncpg.Connection,
    rows: Sequence[tuple[uuid.UUID, uuid.UUID | None, str, str | None, str | None, str | None]],
) -> None:
    """(entry_id, request_id, action, requested_by, outcome, message) rows."""
    if rows:
        await conn.executemany(
            "INSERT INTO publish_history (entry_id, request_id, action, requested_by, outcome, message)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            rows,
        )


# --- outbox ----------------------------------------------------------------------------


async def add_to_outbox(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, str, dict[str, str]]]) -> None:
    """(topic, key, json payload, headers) rows, written in the caller's transaction."""
    if rows:
        await conn.executemany(
            "INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, $2, $3::text::jsonb, $4::text::jsonb)",
            [(t, k, p, json.dumps(h)) for t, k, p, h in rows],
        )


async def take_outbox(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT id, topic, key, payload, headers FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
    )


async def remove_from_outbox(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", list(ids))


# --- replicas of setup, mappings and names ---------------------------------------------


@dataclass
class AccountMappings:
    """The aggregator's replica of one account's setup, mappings and reference names."""

    procore_company_id: int | None = None
    enabled_modules: frozenset[Module] = frozenset()
    two_way: bool = False
    ids: dict[tuple[str, str, int], tuple[int, str | None]] = field(default_factory=dict)
    names: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)

    def procore_id(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> int | None:
        found = self.ids.get((entity.value, mobiclocks_id, project_id or 0))
        return found[0] if found else None

    def procore_name(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None:
        found = self.ids.get((entity.value, mobiclocks_id, project_id or 0))
        return found[1] if found else None

    def label(self, kind: ReferenceKind, entity_id: str) -> str:
        found = self.names.get((kind.value, entity_id))
        if found is None:
            return entity_id
        name, number = found
        return f"{number} {name}" if number else name


async def load_account_mappings(conn: asyncpg.Connection, account_id: str) -> AccountMappings:
    m = AccountMappings()
    setup = await conn.fetchrow("SELECT * FROM setups WHERE account_id = $1", account_id)
    if setup is not None:
        m.procore_company_id = setup["procore_company_id"]
        m.enabled_modules = frozenset(Module(x) for x in setup["enabled_modules"])
        m.two_way = setup["two_way"]
    for r in await conn.fetch("SELECT * FROM mappings WHERE account_id = $1", account_id):
        m.ids[(r["entity"], r["mobiclocks_id"], r["procore_project_id"])] = (
            r["procore_id"],
            r["procore_name"],
        )
    for r in await conn.fetch("SELECT * FROM reference_names WHERE account_id = $1", account_id):
        m.names[(r["kind"], r["entity_id"])] = (r["name"], r["number"])
    return m


async def save_setup(
    conn: asyncpg.Connection,
    account_id: str,
    company_id: int | None,
    modules: Sequence[Module],
    two_way: bool,
) -> None:
    await conn.execute(
        """
        INSERT INTO setups (account_id, procore_company_id, enabled_modules, two_way) VALUES ($1, $2, $3, $4)
        ON CONFLICT (account_id) DO UPDATE SET procore_company_id = EXCLUDED.procore_company_id,
            enabled_modules = EXCLUDED.enabled_modules, two_way = EXCLUDED.two_way, updated_at = now()
        """,
        account_id,
        company_id,
        sorted(m.value for m in modules),
        two_way,
    )


async def save_mapping(
    conn: asyncpg.Connection,
    account_id: str,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    project_id: int | None,
    procore_id: int | None,
    procore_name: str | None,
) -> None:
    if procore_id is None:
        await conn.execute(
            "DELETE FROM mappings WHERE account_id = $1 AND entity = $2 AND mobiclocks_id = $3"
            " AND procore_project_id = $4",
            account_id,
            entity.value,
            mobiclocks_id,
            project_id or 0,
        )
        return
    await conn.execute(
        """
        INSERT INTO mappings (account_id, entity, mobiclocks_id, procore_project_id, procore_id, procore_name)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (account_id, entity, mobiclocks_id, procore_project_id)
        DO UPDATE SET procore_id = EXCLUDED.procore_id, procore_name = EXCLUDED.procore_name
        """,
        account_id,
        entity.value,
        mobiclocks_id,
        project_id or 0,
        procore_id,
        procore_name,
    )


async def save_reference_name(
    conn: asyncpg.Connection,
    account_id: str,
    kind: ReferenceKind,
    entity_id: str,
    name: str | None,
    number: str | None,
) -> None:
    if name is None:
        await conn.execute(
            "DELETE FROM reference_names WHERE account_id = $1 AND kind = $2 AND entity_id = $3",
            account_id,
            kind.value,
            entity_id,
        )
        return
    await conn.execute(
        """
        INSERT INTO reference_names (account_id, kind, entity_id, name, number) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (account_id, kind, entity_id) DO UPDATE SET name = EXCLUDED.name, number = EXCLUDED.number
        """,
        account_id,
        kind.value,
        entity_id,
        name,
        number,
    )
