"""The consumer middleware: tells "unavailable" from "invalid" when a handler fails, and names the account in logs.

Delivery is at-least-once: offsets are committed only after a handler returns (consumers are
idempotent). When a handler fails, the middleware decides by the error (shared.transient):

* **transient** (database away, deadlock, serialization failure, lock/statement timeout, broker
  away, a peer not answering): the work is tried again for as long as it takes, with capped
  exponential backoff and jitter, and never dead-lettered. Meanwhile its partitions are paused,
  the consumer reports not-ready, and nothing is committed past it.
* **permanent** (validation, not JSON, `InvalidMessage`, larger than MAX_MESSAGE_BYTES): a
  single message is dead-lettered at once, with the reason.
* **anything else** (a bug, a DataError): a single message is tried CONSUMER_MAX_ATTEMPTS times,
  then dead-lettered. A batch of several records is never dead-lettered wholesale (valid
  neighbours would go with it): batch handlers isolate poison records themselves
  (`shared.records.apply_isolating_poison`); an error that still escapes a batch is retried with
  backoff and logged loudly.

How a retry happens: the middleware pauses the failing partitions, the message is NACKed
(FastStream seeks each partition back to the batch's first record) and a timer resumes the
partitions after the backoff; the next fetch redelivers the same records. The consume loop
never sleeps inside a handler, so aiokafka's `max_poll_interval_ms` is never exceeded however
long an outage lasts (an hour is an hour of 30 s pauses), heartbeats go on, other partitions
keep flowing, and after a rebalance the new owner starts at the uncommitted record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from aiokafka import TopicPartition
from faststream import BaseMiddleware
from faststream.exceptions import HandlerException, NackMessage
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from pydantic import ValidationError

from shared import metrics
from shared.consumer_stalls import ConsumerStalls, backoff_delay, describe_positions
from shared.logs import account_context
from shared.readiness import readiness_of
from shared.records import failure_reason, json_problem, message_limit, oversize_reason, permanent_reason
from shared.settings import ConsumerSettings
from shared.transient import transient_cause

if TYPE_CHECKING:
    from shared.broker import DeadLetters

# The consumer's log lines keep the logger name operators and tests filter on (from before this module was split out).
log = logging.getLogger("shared.broker")


def _records(msg: StreamMessage[Any]) -> tuple[Any, ...]:
    raw = msg.raw_message
    return raw if isinstance(raw, tuple) else (raw,)


def _earliest(records: Iterable[Any]) -> dict[TopicPartition, int]:
    found: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        if tp not in found or record.offset < found[tp]:
            found[tp] = record.offset
    return found


def make_dead_letter_middleware(  # noqa: C901 - each failure class of the dead-letter path side by side (oversize, unreadable, transient, poison)
    broker: KafkaBroker, dead_letters: DeadLetters, settings: ConsumerSettings
) -> type[BaseMiddleware]:
    """The consumer middleware (see the module docstring); its stalls are reported to the broker's readiness."""
    stalls = ConsumerStalls(dead_letters.service, settings)
    readiness_of(broker).add_probe(stalls.problems)

    async def retry_later(
        msg: StreamMessage[Any], positions: dict[TopicPartition, int], error: BaseException, tries: int, transient: bool
    ) -> NoReturn:
        """Pause the partitions for the backoff and NACK: the same records come again, nothing is committed."""
        consumer = getattr(msg, "consumer", None)
        metrics.retried((tp.topic for tp in positions), metrics.group_of(consumer), transient)
        delay = backoff_delay(tries, settings.consumer_retry_base_s, settings.consumer_retry_cap_s)
        if transient:
            stalls.note_transient(consumer, positions, error, delay)
        if hasattr(consumer, "pause"):
            stalls.pause(consumer, positions, delay)
        else:  # a consumer that cannot pause (FastStream's in-memory test broker): wait here instead
            await asyncio.sleep(delay)
        raise NackMessage() from error

    async def failed(msg: StreamMessage[Any], positions: dict[TopicPartition, int], error: BaseException) -> Any:
        """Decide what a handler error means for this message; returns only when it was dead-lettered."""
        consumer = getattr(msg, "consumer", None)
        records = _records(msg)
        single = len(records) == 1
        if transient_cause(error) is not None:
            tries = stalls.failed(positions, consumer, error, transient=True)
            await retry_later(msg, positions, error, tries, transient=True)
        reason = permanent_reason(error)
        if isinstance(error, ValidationError) and single and (problem := json_problem(msg.body)):
            reason = f"message is not valid JSON: {problem}"
        if single and reason is not None:
            return await dead_letter(msg, positions, reason)
        tries = stalls.failed(positions, consumer, error, transient=False)
        if not single:
            log_escaped_batch_error(len(records), tries, error)
        elif tries >= settings.consumer_max_attempts:
            return await dead_letter(msg, positions, failure_reason(error, tries))
        else:
            log.warning(
                "handler failed on %s (try %d/%d), retrying: %r",
                describe_positions(positions),
                tries,
                settings.consumer_max_attempts,
                error,
            )
        await retry_later(msg, positions, error, tries, transient=False)

    async def dead_letter(msg: StreamMessage[Any], positions: dict[TopicPartition, int], reason: str) -> None:
        try:
            for record in _records(msg):
                await dead_letters.send(record, reason[:2000])
        except Exception as error:
            # Forwarding failed (the broker is away): keep the record and try it all again later; never loop.
            transient = transient_cause(error) is not None
            tries = stalls.failed(positions, getattr(msg, "consumer", None), error, transient=transient)
            await retry_later(msg, positions, error, tries, transient=transient)
        stalls.succeeded(positions)

    def log_escaped_batch_error(count: int, tries: int, error: BaseException) -> None:
        if tries == 1 or tries % 10 == 0:
            log.error(
                "a batch of %d records failed deterministically (try %d): %r. A batch handler must isolate poison "
                "records itself (shared.records.apply_isolating_poison); the batch is retried with backoff and "
                "never dead-lettered wholesale",
                count,
                tries,
                error,
                exc_info=error if tries == 1 else None,
            )

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(
            self, call_next: Callable[[StreamMessage[Any]], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            records = _records(msg)
            positions = _earliest(records)
            group = metrics.group_of(getattr(msg, "consumer", None))
            metrics.consumed(records, group)
            if len(records) == 1 and (
                reason := oversize_reason(len(records[0].value or b""), settings.max_message_bytes)
            ):
                return await dead_letter(msg, positions, reason)
            started = time.perf_counter()
            try:
                with message_limit(settings.max_message_bytes):
                    result = await call_next(msg)
            except HandlerException:
                raise
            except Exception as error:
                metrics.processed(records, group, time.perf_counter() - started, error)
                return await failed(msg, positions, error)
            metrics.processed(records, group, time.perf_counter() - started, None)
            stalls.succeeded(positions)
            return result

    return DeadLetterMiddleware


class AccountLogMiddleware(BaseMiddleware):
    """Log lines written while a message is handled name its account: the part of the key before ':'
    (every key is `account_id` or `account_id:job_site_id`); a batch of several accounts names none."""

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]) -> Any:
        raw = msg.raw_message
        records = raw if isinstance(raw, tuple | list) else (raw,)
        accounts = {(getattr(r, "key", None) or b"").split(b":", 1)[0] for r in records}
        account = accounts.pop().decode(errors="replace") if len(accounts) == 1 else None
        with account_context(account or None):
            return await call_next(msg)
