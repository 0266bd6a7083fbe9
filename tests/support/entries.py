"""Checks that stored entries equal a from-scratch aggregation of the timelogs that should be live."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import asyncpg

from services.aggregator import domain, handlers
from shared.events import Module, TimelogUpserted


async def entry_rows(dsn: str, schema: str) -> dict[Any, dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT * FROM "{schema}".entries')
        members = await conn.fetch(f'SELECT * FROM "{schema}".entry_members')
    finally:
        await conn.close()
    out = {r["entry_id"]: dict(r) | {"members": {}} for r in rows}
    for row in out.values():
        for column in ("content", "dims", "errors"):
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
    for m in members:
        out[m["entry_id"]]["members"][m["employee_id"]] = m["timelogs"]
    return out


def mismatches(
    stored: dict[Any, dict[str, Any]], live: Iterable[TimelogUpserted], modules: Iterable[Module] = tuple(Module)
) -> list[str]:
    """Human-readable differences between stored entries and a recompute (empty when equal)."""
    by_account: dict[str, list[domain.Timelog]] = {}
    for e in live:
        by_account.setdefault(e.account_id, []).append(handlers._to_timelog(e))
    problems: list[str] = []
    expected_ids = set()
    for account, timelogs in by_account.items():
        for ref, totals in domain.aggregate(timelogs, modules).items():
            entry_id = domain.entry_id(account, ref.module, ref.key)
            expected_ids.add(entry_id)
            row = stored.get(entry_id)
            if row is None:
                problems.append(f"missing {account} {ref}")
                continue
            want = (domain.content_of(ref.module, totals), totals.seconds, totals.units, totals.contributions)
            got = (row["content"], row["seconds"], Decimal(row["units"]), row["contributions"])
            if want != got or row["members"] != dict(totals.members):
                problems.append(
                    f"{account} {ref}: stored {got} {row['members']}, expected {want} {dict(totals.members)}"
                )
    for entry_id, row in stored.items():
        if entry_id not in expected_ids and row["content"] is not None:
            problems.append(f"unexpected entry {row['entry_key']} with {row['content']}")
    return problems
