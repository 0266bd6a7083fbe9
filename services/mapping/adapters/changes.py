"""Setup and mapping changes leave through the outbox: written in the transaction that makes them.

`shared.outbox.OutboxRelay` sends them to `mapping.changes` after the commit (at least once, in the order
they were written); the aggregator applies each change idempotently (it carries the whole new state of
one setup or one mapping), so a duplicate send is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from shared.events import MappingChanged, ProcoreEntity, SetupChanged
from shared.outbox import OutboxMessage, add_to_outbox, trace_headers

Change = SetupChanged | MappingChanged


async def emit(db: asyncpg.Connection, topic: str, changes: Sequence[Change]) -> None:
    """Queue changes in the caller's transaction, keyed by account (one account's changes stay in order)."""
    if changes:
        headers = trace_headers()
        await add_to_outbox(
            db, [OutboxMessage(topic, change.account_id, change.model_dump_json(), headers) for change in changes]
        )


def mapping_changed(
    account_id: str,
    entity: ProcoreEntity,
    mobiclocks_id: str,
    project_id: int | None,
    procore_id: int | None,
    name: str | None = None,
    broken_reason: str | None = None,
) -> MappingChanged:
    """One mapping's new state as the aggregator follows it (a name only when it maps to something)."""
    return MappingChanged(
        account_id=account_id,
        entity=entity,
        mobiclocks_id=mobiclocks_id,
        procore_id=procore_id,
        procore_project_id=project_id or None,
        procore_name=name if procore_id is not None else None,
        broken_reason=broken_reason,
    )
