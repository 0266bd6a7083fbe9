"""The entries oracle for tests that read while the aggregator writes."""

from __future__ import annotations

from collections.abc import Iterable

from shared.events import TimelogUpserted
from tests.support.entries import entry_rows, mismatches


async def differences(dsn: str, schema: str, live: Iterable[TimelogUpserted]) -> list[str]:
    """Stored entries vs a recompute of `live`; empty when equal.

    `entry_rows` reads entries and their members in two statements: while a batch commits in between,
    a member can name an entry the first read did not see. That read says nothing yet; poll again."""
    try:
        return mismatches(await entry_rows(dsn, schema), live)
    except KeyError as error:
        return [f"read torn by a concurrent batch (member of unseen entry {error})"]
