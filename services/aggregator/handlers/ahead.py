"""Statements sent ahead: one of a transaction's statements runs in PostgreSQL while this process works out the next
step, instead of the two taking turns on a two-core machine.

A connection runs one statement at a time, so at most one is in flight: the caller awaits it before it sends or runs
any other statement on the same transaction. Leaving the block waits for a statement still in flight (an error
path), so the transaction never rolls back or commits under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Ahead:
    """Sends statements ahead (see the module)."""

    def __init__(self) -> None:
        self._flying: asyncio.Future[Any] | None = None

    async def send(self, statement: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Start `statement` and return once it is on the wire; await the returned future for its result."""
        if self._flying is not None and not self._flying.done():
            statement.close()
            raise RuntimeError("a statement is still in flight on this transaction: await it first")
        flying = self._flying = asyncio.ensure_future(statement)
        await asyncio.sleep(0)  # one step of the statement's task: it is sent when this returns
        return flying

    async def land(self) -> None:
        """Wait for a statement still in flight, whatever its outcome (its error is the caller's to see)."""
        flying = self._flying
        if flying is not None and not flying.done():
            await asyncio.wait([flying])
        if flying is not None and flying.done() and not flying.cancelled():
            flying.exception()  # seen: an error the caller never awaited is not reported as unretrieved


@asynccontextmanager
async def statements_ahead() -> AsyncIterator[Ahead]:
    ahead = Ahead()
    try:
        yield ahead
    finally:
        await ahead.land()
