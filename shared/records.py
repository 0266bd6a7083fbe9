"""Reading a batch of Kafka records, and applying it so that one poison record never takes its neighbours along.

`parse_records` is the one way a batch consumer turns records into messages: size check →
JSON check → validation against the topic's union. It returns the valid messages and, for
every other record, the reason it can never be processed (to be dead-lettered).

`apply_isolating_poison` applies valid messages in as few transactions as possible and, when a
batch fails deterministically, bisects it until the record(s) at fault are alone — those are
rejected, every other record is applied. A transient failure (the database is away) is
re-raised at once, so the consumer retries the whole batch later instead of rejecting anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from shared.errors import InvalidMessage
from shared.transient import transient_cause

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024

_message_limit: ContextVar[int] = ContextVar("max_message_bytes", default=DEFAULT_MAX_MESSAGE_BYTES)


class DeadLetterSink(Protocol):
    """Where a consumer sends a record it can never process, with the reason (`shared.broker.DeadLetters`)."""

    async def send(self, record: Any, reason: str, headers: dict[str, str] | None = None) -> None: ...


@contextmanager
def message_limit(max_bytes: int) -> Iterator[None]:
    """Within this block `parse_records` uses `max_bytes` (the consumer middleware sets the service's setting)."""
    token = _message_limit.set(max_bytes)
    try:
        yield
    finally:
        _message_limit.reset(token)


def current_message_limit() -> int:
    return _message_limit.get()


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for err in error.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)[:2000]


def json_problem(body: bytes) -> str | None:
    try:
        json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return str(error)
    return None


def oversize_reason(size: int, limit: int) -> str | None:
    return f"message is {size} bytes; the limit is {limit}" if size > limit else None


def permanent_reason(error: BaseException) -> str | None:
    """Why a message can never be processed, for errors that say so; None for every other error."""
    if isinstance(error, ValidationError):
        return f"invalid message: {describe_validation_error(error)}"
    if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
        return f"message is not valid JSON: {error}"
    if isinstance(error, InvalidMessage):
        return f"invalid message: {error}"
    return None


def rejection_reason(value: bytes, error: ValidationError) -> str:
    """A validation failure of a raw value, named as bad JSON when it is not JSON at all."""
    problem = json_problem(value)
    return (
        f"message is not valid JSON: {problem}" if problem else f"invalid message: {describe_validation_error(error)}"
    )


def parse_records(
    records: Sequence[Any], adapter: TypeAdapter[T], max_bytes: int | None = None
) -> tuple[list[tuple[Any, T]], list[tuple[Any, str]]]:
    """Kafka records → (record, message) for the valid ones and (record, reason) for the rest, in order.

    `max_bytes` defaults to the limit of the consumer being served (setting MAX_MESSAGE_BYTES)."""
    limit = max_bytes if max_bytes is not None else current_message_limit()
    valid: list[tuple[Any, T]] = []
    rejects: list[tuple[Any, str]] = []
    for record in records:
        value: bytes = record.value or b""
        if reason := oversize_reason(len(value), limit):
            rejects.append((record, reason))
            continue
        try:
            valid.append((record, adapter.validate_json(value)))
        except ValidationError as error:
            rejects.append((record, rejection_reason(value, error)))
    return valid, rejects


def failure_reason(error: BaseException, attempts: int) -> str:
    return f"handler failed {attempts} times: {error!r}"[:2000]


def _deterministic(error: BaseException) -> bool:
    return transient_cause(error) is None


async def apply_isolating_poison(
    items: Sequence[T],
    apply: Callable[[Sequence[T]], Awaitable[Any]],
    reject: Callable[[T, BaseException], Awaitable[None]],
    *,
    attempts: int = 3,
    retry_delay_s: float = 0.2,
) -> int:
    """Apply `items` (in order) with `apply`, rejecting only items that fail on their own; returns how many it rejected.

    `apply` must be atomic (one transaction) and idempotent: after a bisection, the halves that
    succeeded are applied again if a later transient error makes the consumer retry the batch.
    A single item that fails deterministically is tried `attempts` times before `reject(item, error)`.
    Transient errors (see shared.transient) propagate at once and reject nothing.
    """
    if not items:
        return 0
    if len(items) == 1:
        return await _apply_alone(items[0], apply, reject, attempts, retry_delay_s)
    try:
        await apply(items)
        return 0
    except Exception as error:
        if not _deterministic(error):
            raise
        log.warning("a batch of %d failed (%r): bisecting it to find the record(s) at fault", len(items), error)
    middle = len(items) // 2
    rejected = await apply_isolating_poison(
        items[:middle], apply, reject, attempts=attempts, retry_delay_s=retry_delay_s
    )
    return rejected + await apply_isolating_poison(
        items[middle:], apply, reject, attempts=attempts, retry_delay_s=retry_delay_s
    )


async def _apply_alone(
    item: T,
    apply: Callable[[Sequence[T]], Awaitable[Any]],
    reject: Callable[[T, BaseException], Awaitable[None]],
    attempts: int,
    retry_delay_s: float,
) -> int:
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_deterministic),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=retry_delay_s, max=5.0),
            reraise=True,
        ):
            with attempt:
                await apply([item])
    except Exception as error:
        if not _deterministic(error):
            raise
        log.warning("rejecting one record after %d attempts: %r", attempts, error)
        await reject(item, error)
        return 1
    return 0
