"""Failing partitions of a service's consumers: tries so far, capped backoff with jitter, pause episodes (logged
when they start, now and then, and when they end) and what readiness reports. Used by `shared.consumer_middleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from shared.settings import ConsumerSettings

# The consumer's log lines keep the logger name operators and tests filter on (from before this module was split out).
log = logging.getLogger("shared.broker")


def backoff_delay(attempt: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with jitter: attempt 1 waits ~base, doubling up to ~cap (between half and all)."""
    ceiling = min(cap_s, base_s * 2 ** min(attempt - 1, 40))
    return ceiling * (0.5 + rand() / 2)


def _label(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


@dataclass
class _Stall:
    """A partition whose work at `offset` keeps failing."""

    offset: int
    consumer: Any
    since: float
    transient_tries: int = 0
    failures: int = 0
    """Deterministic failures (a transient one says nothing about the message)."""
    transient: bool = True
    error: str = ""


@dataclass
class _Pause:
    """One consumer waiting out an outage: logged when it starts, every so often, and when it ends."""

    since: float
    last_logged: float
    tries: int = 0


@dataclass
class ConsumerStalls:
    """Failing partitions of one service's consumers: attempt counts, backoff, pause episodes, readiness."""

    service: str
    settings: ConsumerSettings
    clock: Callable[[], float] = time.monotonic
    stalls: dict[TopicPartition, _Stall] = field(default_factory=dict)
    pauses: dict[int, _Pause] = field(default_factory=dict)
    _timers: dict[TopicPartition, asyncio.TimerHandle] = field(default_factory=dict)

    def failed(self, positions: dict[TopicPartition, int], consumer: Any, error: BaseException, transient: bool) -> int:
        """Note a failure of work starting at `positions`; returns the tries so far of that kind."""
        now = self.clock()
        tries = 0
        for tp, offset in positions.items():
            stall = self.stalls.get(tp)
            if stall is None or stall.offset != offset:
                stall = self.stalls[tp] = _Stall(offset, consumer, now)
            stall.transient, stall.error, stall.consumer = transient, repr(error)[:300], consumer
            if transient:
                stall.transient_tries += 1
                tries = max(tries, stall.transient_tries)
            else:
                stall.failures += 1
                tries = max(tries, stall.failures)
        return tries

    def succeeded(self, positions: Iterable[TopicPartition]) -> None:
        for tp in positions:
            if (stall := self.stalls.pop(tp, None)) is not None:
                self._cancel_timer(tp)
                self._maybe_resumed(stall.consumer)

    def pause(self, consumer: Any, positions: Iterable[TopicPartition], delay_s: float) -> None:
        """Stop fetching these partitions for `delay_s` (the NACK seeks them back to the failed records)."""
        loop = asyncio.get_running_loop()
        for tp in positions:
            try:
                consumer.pause(tp)
            except Exception:  # revoked while the handler ran: its new owner starts at the uncommitted record
                continue
            self._cancel_timer(tp)
            self._timers[tp] = loop.call_later(delay_s, self._resume, consumer, tp)

    def _resume(self, consumer: Any, tp: TopicPartition) -> None:
        self._timers.pop(tp, None)
        with contextlib.suppress(Exception):  # revoked meanwhile, or the consumer stopped: nothing to resume
            consumer.resume(tp)

    def _cancel_timer(self, tp: TopicPartition) -> None:
        if (timer := self._timers.pop(tp, None)) is not None:
            timer.cancel()

    # -- pause episodes (transient failures): one line when they start, now and then, and when they end --
    def note_transient(
        self, consumer: Any, positions: dict[TopicPartition, int], error: BaseException, delay: float
    ) -> None:
        now = self.clock()
        where = describe_positions(positions)
        pause = self.pauses.get(id(consumer))
        if pause is None:
            self.pauses[id(consumer)] = _Pause(since=now, last_logged=now, tries=1)
            log.warning(
                "%s: consumer paused at %s: %r is transient (unavailable, not invalid); retrying with backoff "
                "(next in %.2fs) for as long as it takes; nothing is dead-lettered or committed past it",
                self.service,
                where,
                error,
                delay,
            )
            return
        pause.tries += 1
        if now - pause.last_logged >= self.settings.consumer_pause_log_interval_s:
            pause.last_logged = now
            log.warning(
                "%s: consumer still paused at %s after %.0fs (%d tries): %r; next try in %.2fs",
                self.service,
                where,
                now - pause.since,
                pause.tries,
                error,
                delay,
            )

    def _maybe_resumed(self, consumer: Any, how: str = "resumed") -> None:
        if any(s.consumer is consumer and s.transient for s in self.stalls.values()):
            return
        pause = self.pauses.pop(id(consumer), None)
        if pause is not None:
            log.info(
                "%s: consumer %s after %.1fs paused (%d tries)",
                self.service,
                how,
                self.clock() - pause.since,
                pause.tries,
            )

    def problems(self) -> dict[str, str]:
        """Readiness: partitions paused on a transient failure, or stuck on a batch that keeps failing."""
        now = self.clock()
        found = {}
        for tp, stall in list(self.stalls.items()):
            if not _assigned(stall.consumer, tp):
                self.stalls.pop(tp, None)  # revoked: its new owner reports for it now
                self._cancel_timer(tp)
                self._maybe_resumed(stall.consumer, "handed its paused partitions to another member")
                continue
            if stall.transient:
                found[f"consumer {_label(tp)}"] = (
                    f"paused {now - stall.since:.0f}s at offset {stall.offset}: {stall.error}"
                )
            elif stall.failures >= self.settings.consumer_max_attempts:
                found[f"consumer {_label(tp)}"] = (
                    f"stuck {now - stall.since:.0f}s on a failing batch at offset {stall.offset}: {stall.error}"
                )
        return found


def _assigned(consumer: Any, tp: TopicPartition) -> bool:
    assignment = getattr(consumer, "assignment", None)
    if assignment is None:
        return True
    try:
        return tp in assignment()
    except Exception:  # a stopped consumer
        return False


def describe_positions(positions: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{_label(tp)}@{offset}" for tp, offset in sorted(positions.items()))
