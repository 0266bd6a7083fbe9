"""Which failures are *transient* (wait and try the same work again) and which are not.

Unavailable is not invalid: a database that restarts, a broker that is away, a peer service
or Procore that does not answer, a deadlock or a serialization failure all say nothing about
the message being processed. Such work is retried — the whole batch, for as long as it takes —
and never dead-lettered. Everything else is a property of the message or of the code, and the
same input fails the same way again: only that may end in a dead-letter topic.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
from aiokafka import errors as kafka_errors

# SQLSTATE classes and codes that describe the server or the moment, not the statement.
_TRANSIENT_SQLSTATE_CLASSES = (
    "08",  # connection exception
    "53",  # insufficient resources (too many connections, out of memory, disk full)
    "57",  # operator intervention (admin/crash shutdown, cannot connect now, query canceled)
    "58",  # system error (I/O)
)
_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout)
        "55006",  # object_in_use
        "25006",  # read_only_sql_transaction (a replica during failover)
    }
)


class Transient(Exception):
    """Raised by our own code for a condition that will pass (a peer not ready, a lease not held yet)."""


def is_transient(error: BaseException) -> bool:
    """True when the same work may succeed if simply tried again later."""
    if isinstance(error, Transient):
        return True
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", None) or ""
        return state in _TRANSIENT_SQLSTATES or state[:2] in _TRANSIENT_SQLSTATE_CLASSES
    if isinstance(error, asyncpg.InterfaceError):
        # "connection is closed", "pool is closing", "connection was closed in the middle of operation": the
        # connection went away under us. Other interface errors ("another operation is in progress") are bugs.
        text = str(error).lower()
        return "closed" in text or "closing" in text
    if isinstance(error, kafka_errors.KafkaError):
        return bool(getattr(error, "retriable", False)) or isinstance(
            error,
            kafka_errors.KafkaConnectionError
            | kafka_errors.KafkaTimeoutError
            | kafka_errors.NodeNotReadyError
            | kafka_errors.RequestTimedOutError
            | kafka_errors.CommitFailedError
            | kafka_errors.RebalanceInProgressError,
        )
    if isinstance(error, httpx.TransportError):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code in (429, 502, 503, 504)
    if isinstance(error, asyncio.CancelledError):
        return False
    # OSError covers ConnectionRefusedError, ConnectionResetError, socket.gaierror, BrokenPipeError
    return isinstance(error, OSError | TimeoutError | ConnectionError)


def transient_cause(error: BaseException) -> BaseException | None:
    """The transient error in `error` or its explicit cause chain (`raise … from …`), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if is_transient(current):
            return current
        if isinstance(current, BaseExceptionGroup):
            for inner in current.exceptions:
                if (found := transient_cause(inner)) is not None:
                    return found
        current = current.__cause__
    return None
