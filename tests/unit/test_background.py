"""The loop the services' pollers share (`shared/background.RepeatingTask`): a failing round marks it unhealthy and
is retried after a backoff, a round that works again marks it healthy, `wake` cuts the wait short, `stop` ends it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.background import RepeatingTask

log = logging.getLogger(__name__)


class Rounds:
    """Fails the rounds named in `failing` (1-based), counts them all."""

    def __init__(self, failing: set[int]) -> None:
        self.failing = failing
        self.count = 0
        self.done = asyncio.Event()

    async def __call__(self) -> None:
        self.count += 1
        self.done.set()
        if self.count in self.failing:
            raise RuntimeError(f"round {self.count}")


async def rounds_reach(rounds: Rounds, count: int) -> None:
    async with asyncio.timeout(5):
        while rounds.count < count:
            rounds.done.clear()
            await rounds.done.wait()


async def test_a_failing_round_is_logged_reported_and_retried_until_one_works(caplog: pytest.LogCaptureFixture) -> None:
    rounds = Rounds(failing={1, 2})
    task = RepeatingTask(rounds, name="t", what="test loop", log=log, interval_s=60, backoff_base_s=0.001)
    task.start()
    try:
        await rounds_reach(rounds, 2)
        assert task.healthy is False
        await rounds_reach(rounds, 3)
        await asyncio.sleep(0)
        assert task.healthy is True
    finally:
        await task.stop()
    assert [r.getMessage().split(";")[0] for r in caplog.records if r.name == __name__] == ["test loop failed"] * 2
    assert rounds.count == 3  # then it waits the interval


async def test_wake_runs_the_next_round_now_and_stop_ends_the_loop() -> None:
    rounds = Rounds(failing=set())
    task = RepeatingTask(rounds, name="t", what="test loop", log=log, interval_s=60)
    task.start()
    await rounds_reach(rounds, 1)
    task.wake()
    await rounds_reach(rounds, 2)
    await task.stop()
    await task.stop()  # a second stop does nothing
    assert rounds.count == 2
