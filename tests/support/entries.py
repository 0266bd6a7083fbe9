"""Checks that stored entries equal a from-scratch aggregation of the timelogs that should be live, and
helpers for the aggregator's tests: its stream (keyed as MobiClocks core keys it), its dead letters, what
it has applied."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.aggregator import domain, handlers
from shared.events import Module, TimelogUpserted
from tests.bench.generator import Generator

TimelogState = tuple[str, str, int, bool]
"""(account, timelog, revision, deleted): one stored timelog row."""


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
        by_account.setdefault(e.account_id, []).append(handlers.to_timelog(e))
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


async def send_keyed(bootstrap: str, topic: str, events: list[Any], chunk: int = 200, pause_s: float = 0.0) -> None:
    """Keyed like MobiClocks core keys them (account:job site), so a moved timelog changes partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for start in range(0, len(events), chunk):
            for e in events[start : start + chunk]:
                value = e if isinstance(e, bytes) else e.model_dump_json().encode()
                key = f"{getattr(e, 'account_id', '')}:{getattr(e, 'job_site_id', '')}".encode()
                await producer.send(topic, value, key=key)
            await producer.flush()
            await asyncio.sleep(pause_s)
    finally:
        await producer.stop()


async def records_of(bootstrap: str, topic: str, quiet_s: float = 3.0) -> list[Any]:
    """Every record of a topic, read until nothing more arrives for `quiet_s`."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:
        while batch := await consumer.getmany(timeout_ms=int(quiet_s * 1000)):
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def applied_timelogs(dsn: str, schema: str) -> set[TimelogState]:
    """The timelog rows the aggregator has stored (empty before its schema exists)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f'SELECT account_id, timelog_id, revision, deleted FROM "{schema}".timelogs')
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await conn.close()
    return {(r["account_id"], r["timelog_id"], r["revision"], r["deleted"]) for r in rows}


def final_timelogs(gen: Generator) -> set[TimelogState]:
    """The timelog rows a generated stream must leave: live ones, and tombstones of deleted ones."""
    live = {(e.account_id, e.timelog_id, e.revision, False) for e in gen.live.values()}
    return live | {(a, t, rev, True) for (a, t), rev in gen.revisions.items() if (a, t) not in gen.live}


async def stored_setups(dsn: str, schema: str) -> int:
    """Accounts whose setup the aggregator has applied."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".setups') or 0)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()
