"""What a failed round of a publish request means: wait and try again, count it, or fail the entry.

Unavailable is not invalid. Procore unreachable (connection errors, timeouts, and 408/429/502/503/504
once one call's bounded retries are spent), the mapping service's token endpoint unreachable, or the
database away say nothing about the entry: the request stays pending and its company's worker backs
off and tries again for as long as it takes.

A permanent error (a 4xx other than 408/429: Procore's validation, permissions, a missing
connection) fails the entry at once with Procore's own message.

A **500** is Procore's own failure and usually passes, so it is retried like unavailability — but
one that comes back on every round for the same request, while the company's other calls work, is
almost always triggered by that record, and waiting on it forever would hold up every later request
of the company. So 500s (and other 5xx that are not about availability, and unexpected errors in our
own code) are counted per request: after `PUBLISHER_MAX_TRIES` rounds, with the worker's capped
exponential backoff between them, the entry fails with the last message; Republish tries again.
"""

from __future__ import annotations

from enum import StrEnum

import httpx

from services.publisher.adapters.procore import MaybeCreated, describe
from shared.procore import NotConnected, ProcoreError
from shared.transient import is_transient

UNAVAILABLE_STATUSES = frozenset({408, 429, 502, 503, 504})


class Failure(StrEnum):
    UNAVAILABLE = "unavailable"
    """Try again later, as often as it takes; never fails the entry."""
    SERVER_ERROR = "server error"
    """Try again later, counted; fails the entry after PUBLISHER_MAX_TRIES rounds."""
    PERMANENT = "permanent"
    """Fail the entry now."""


def classify(error: BaseException) -> Failure:
    cause = error.cause if isinstance(error, MaybeCreated) else error
    if isinstance(cause, NotConnected):
        return Failure.PERMANENT
    if isinstance(cause, ProcoreError):
        if cause.status in UNAVAILABLE_STATUSES:
            return Failure.UNAVAILABLE
        return Failure.SERVER_ERROR if cause.status >= 500 else Failure.PERMANENT
    if isinstance(cause, httpx.TransportError) or is_transient(cause):
        return Failure.UNAVAILABLE
    return Failure.SERVER_ERROR


def message_for(error: BaseException) -> str:
    """What the entry's Failed reason says: Procore's own words where there are some."""
    if isinstance(error, MaybeCreated):
        return str(error)
    if isinstance(error, ProcoreError | httpx.TransportError):
        return describe(error)
    return f"the publisher failed: {error!r}"[:500]
