"""Checks that stored entries equal a from-scratch aggregation of the timelogs that should be live."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import asyncpg

from services.aggregator import domain, handlers
from shared.events import Module, TimelogUpserted


class StoredEntries(dict[Any, dict[str, Any]]):
    """Entry rows by entry id (each with its `members`), all read in one snapshot."""

    def __init__(self) -> None:
        super().__init__()
        self.orphan_members: list[tuple[Any, str]] = []
        """(entry_id, employee_id) member rows whose entry does not exist: never valid, in any snapshot."""


async def entry_rows(dsn: str, schema: str) -> StoredEntries:
    """Entries and their members as one consistent snapshot.

    Two plain statements would see different moments while the aggregator writes: members of an
    entry committed between them would have no entry (or an entry would miss its members)."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(f'SELECT * FROM "{schema}".entries')
            members = await conn.fetch(f'SELECT * FROM "{schema}".entry_members')
    finally:
        await conn.close()
    out = StoredEntries()
    for r in rows:
        row = dict(r) | {"members": {}}
        for column in ("content", "dims", "errors"):
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
        out[r["entry_id"]] = row
    for m in members:
        if m["entry_id"] in out:
            out[m["entry_id"]]["members"][m["employee_id"]] = m["timelogs"]
        else:
            out.orphan_members.append((m["entry_id"], m["employee_id"]))
    return out


def mismatches(
    stored: dict[Any, dict[str, Any]], live: Iterable[TimelogUpserted], modules: Iterable[Module] = tuple(Module)
) -> list[str]:
    """Human-readable differences between stored entries and a recompute (empty when equal)."""
    by_account: dict[str, list[domain.Timelog]] = {}
    for e in live:
        by_account.setdefault(e.account_id, []).append(handlers._to_timelog(e))
    problems: list[str] = [
        f"member {employee} of entry {entry_id}, which does not exist"
        for entry_id, employee in getattr(stored, "orphan_members", ())
    ]
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
