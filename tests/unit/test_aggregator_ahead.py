"""`handlers.ahead`: a statement sent ahead is under way when `send` returns, only one flies at a time, and leaving
the block waits for one still in flight."""

from __future__ import annotations

import asyncio

import pytest

from services.aggregator.handlers.ahead import statements_ahead


class FakeStatement:
    """A statement that records when it was sent and finishes when told."""

    def __init__(self) -> None:
        self.sent = False
        self.finished = False
        self.release = asyncio.Event()

    async def run(self, result: int = 1, error: Exception | None = None) -> int:
        self.sent = True
        await self.release.wait()
        self.finished = True
        if error is not None:
            raise error
        return result


async def test_a_statement_is_sent_when_send_returns_and_its_result_awaited_later() -> None:
    statement = FakeStatement()
    async with statements_ahead() as ahead:
        flying = await ahead.send(statement.run(7))
        assert statement.sent  # on the wire while the caller goes on working
        assert not flying.done()
        statement.release.set()
        assert await flying == 7


async def test_only_one_statement_flies_at_a_time() -> None:
    first, second = FakeStatement(), FakeStatement()
    async with statements_ahead() as ahead:
        flying = await ahead.send(first.run())
        with pytest.raises(RuntimeError, match="still in flight"):
            await ahead.send(second.run())
        assert not second.sent
        first.release.set()
        await flying
        second.release.set()
        assert await (await ahead.send(second.run(2))) == 2


async def test_leaving_on_an_error_waits_for_the_statement_in_flight() -> None:
    statement = FakeStatement()
    asyncio.get_running_loop().call_later(0.05, statement.release.set)

    async def failing_caller() -> None:
        async with statements_ahead() as ahead:
            await ahead.send(statement.run(error=RuntimeError("the statement failed too")))
            raise ValueError("the caller failed")

    with pytest.raises(ValueError, match="the caller failed"):
        await failing_caller()
    assert statement.finished  # the transaction can roll back now: nothing runs on its connection
