"""Setup and mapping changes leave through the outbox: written in the transaction that makes them.

`shared.outbox.OutboxRelay` sends them to `mapping.changes` after the commit (at least once, in the order
they were written); the aggregator applies each change idempotently (it carries the whole new state of
one setup or one mapping), so a duplicate send is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.events import MappingChanged, SetupChanged
from shared.outbox import OutboxMessage, add_to_outbox, trace_headers

Change = SetupChanged | MappingChanged


async def emit(conn: asyncpg.Connection, topic: str, changes: Sequence[Change]) -> None:
    """Queue changes in the caller's transaction, keyed by account (one account's changes stay in order)."""
    if changes:
        headers = trace_headers()
        await add_to_outbox(
            conn, [OutboxMessage(topic, change.account_id, change.model_dump_json(), headers) for change in changes]
        )
