"""The aggregator's replica of each account's setup, mappings and reference names (tables `setups`, `mappings`,
`reference_names`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from services.aggregator.adapters import arrays
from shared.events import Module, ProcoreEntity, ReferenceKind


@dataclass
class AccountMappings:
    """The aggregator's replica of one account's setup, mappings and reference names."""

    procore_company_id: int | None = None
    enabled_modules: frozenset[Module] = frozenset()
    two_way: bool = False
    ids: dict[tuple[str, str, int], tuple[int, str | None]] = field(default_factory=dict)
    names: dict[tuple[str, str], tuple[str, str | None]] = field(default_factory=dict)
    broken: dict[tuple[str, str, int], str] = field(default_factory=dict)
    """Mappings cleared because their Procore entity disappeared, with the reason."""

    def broken_reason(self, entity: ProcoreEntity, mobiclocks_id: str, project_id: int | None = None) -> str | None:
        return self.broken.get((entity.value, mobiclocks_id, project_id or 0))

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


def _remember_mapping(m: AccountMappings, r: asyncpg.Record) -> None:
    key = (r["entity"], r["mobiclocks_id"], r["procore_project_id"])
    if r["procore_id"] is not None:
        m.ids[key] = (r["procore_id"], r["procore_name"])
    elif r["broken_reason"]:
        m.broken[key] = r["broken_reason"]


async def load_account_mappings(conn: asyncpg.Connection, account_id: str) -> AccountMappings:
    m = AccountMappings()
    setup = await conn.fetchrow("SELECT * FROM setups WHERE account_id = $1", account_id)
    if setup is not None:
        m.procore_company_id = setup["procore_company_id"]
        m.enabled_modules = frozenset(Module(x) for x in setup["enabled_modules"])
        m.two_way = setup["two_way"]
    for r in await conn.fetch("SELECT * FROM mappings WHERE account_id = $1", account_id):
        _remember_mapping(m, r)
    for r in await conn.fetch("SELECT * FROM reference_names WHERE account_id = $1", account_id):
        m.names[(r["kind"], r["entity_id"])] = (r["name"], r["number"])
    return m


async def load_setups(conn: asyncpg.Connection, account_ids: Sequence[str]) -> dict[str, AccountMappings]:
    """Setup of each account (enabled modules, Procore company), mappings not loaded yet."""
    out = {a: AccountMappings() for a in account_ids}
    for r in await conn.fetch("SELECT * FROM setups WHERE account_id = ANY($1::text[])", list(account_ids)):
        m = out[r["account_id"]]
        m.procore_company_id = r["procore_company_id"]
        m.enabled_modules = frozenset(Module(x) for x in r["enabled_modules"])
        m.two_way = r["two_way"]
    return out


async def load_mappings_for(
    conn: asyncpg.Connection,
    accounts: dict[str, AccountMappings],
    ids: set[tuple[str, str, str]],
    names: set[tuple[str, str, str]],
) -> None:
    """Fill in just the mappings (account, entity, MobiClocks id) and names (account, kind, id) asked for."""
    if ids:
        rows = await conn.fetch(
            """
            SELECT m.* FROM mappings m
              JOIN unnest($1::text::text[], $2::text::text[], $3::text::text[]) AS k(account_id, entity, mobiclocks_id)
                ON m.account_id = k.account_id AND m.entity = k.entity AND m.mobiclocks_id = k.mobiclocks_id
            """,
            *(arrays.texts(list(column)) for column in zip(*ids, strict=True)),
        )
        for r in rows:
            _remember_mapping(accounts[r["account_id"]], r)
    if names:
        rows = await conn.fetch(
            """
            SELECT n.* FROM reference_names n
              JOIN unnest($1::text::text[], $2::text::text[], $3::text::text[]) AS k(account_id, kind, entity_id)
                ON n.account_id = k.account_id AND n.kind = k.kind AND n.entity_id = k.entity_id
            """,
            *(arrays.texts(list(column)) for column in zip(*names, strict=True)),
        )
        for r in rows:
            accounts[r["account_id"]].names[(r["kind"], r["entity_id"])] = (r["name"], r["number"])


async def save_setup(
    conn: asyncpg.Connection,
    account_id: str,
    company_id: int | None,
    modules: Sequence[Module],
    two_way: bool,
    auto_publish: dict[Module, int] | None = None,
) -> None:
    """`auto_publish` None keeps what is stored (an event that does not say)."""
    await conn.execute(
        """
        INSERT INTO setups (account_id, procore_company_id, enabled_modules, two_way, auto_publish)
        VALUES ($1, $2, $3, $4, coalesce($5::text::jsonb, '{}'))
        ON CONFLICT (account_id) DO UPDATE SET procore_company_id = EXCLUDED.procore_company_id,
            enabled_modules = EXCLUDED.enabled_modules, two_way = EXCLUDED.two_way, updated_at = now(),
            auto_publish = coalesce($5::text::jsonb, setups.auto_publish)
        """,
        account_id,
        company_id,
        sorted(m.value for m in modules),
        two_way,
        None if auto_publish is None else json.dumps({m.value: n for m, n in sorted(auto_publish.items())}),
    )


async def save_mapping(
    conn: asyncpg.Connection,
    account_id: str,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    project_id: int | None,
    procore_id: int | None,
    procore_name: str | None,
    broken_reason: str | None = None,
) -> None:
    if procore_id is None and not broken_reason:
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
        INSERT INTO mappings (account_id, entity, mobiclocks_id, procore_project_id, procore_id, procore_name,
                              broken_reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (account_id, entity, mobiclocks_id, procore_project_id)
        DO UPDATE SET procore_id = EXCLUDED.procore_id, procore_name = EXCLUDED.procore_name,
                      broken_reason = EXCLUDED.broken_reason
        """,
        account_id,
        entity.value,
        mobiclocks_id,
        project_id or 0,
        procore_id,
        procore_name,
        None if procore_id is not None else broken_reason,
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
