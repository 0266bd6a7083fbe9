"""Per-account rate limits on commands, counted by the `limits` library (moving window).

A command is cheap to send and expensive to carry out (publishing reaches Procore, sync pulls whole lists, connecting
calls Procore's token endpoint): one account cannot flood the services or spend another account's share of Procore's
rate limit. Past a limit the gateway answers 429 with Retry-After and sends nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from enum import StrEnum

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string


class CommandGroup(StrEnum):
    """Commands that share one budget per account."""

    PUBLISH = "publish"
    SETUP = "setup"
    CONNECT = "connect"
    MAPPING = "mapping"
    SYNC = "sync"
    WEBHOOK = "webhook"
    """Procore's webhook deliveries, counted per hook (by a digest of its Authorization header)."""


class RateLimited(Exception):
    """The account sent more commands of a group than its limit allows: HTTP 429 with Retry-After."""

    def __init__(self, group: CommandGroup, limit: RateLimitItem, retry_after_s: int) -> None:
        self.group = group
        self.retry_after_s = retry_after_s
        super().__init__(
            f"too many {group.value} commands for this account: at most {limit} (RATE_LIMIT_{group.name}); "
            f"retry in {retry_after_s} s"
        )


class CommandRateLimits:
    def __init__(self, limits: Mapping[CommandGroup, str], storage_uri: str = "memory://") -> None:
        self._items = {group: parse_many(value) for group, value in limits.items()}
        # The async flavour of the storage: counting never blocks the event loop (redis://… included).
        self._limiter = MovingWindowRateLimiter(storage_from_string(f"async+{storage_uri}"))

    async def hit(self, account_id: str, group: CommandGroup) -> None:
        """Count one command of `group` for the account; `RateLimited` when a limit is already used up."""
        for item in self._items[group]:
            if not await self._limiter.hit(item, group.value, account_id):
                stats = await self._limiter.get_window_stats(item, group.value, account_id)
                raise RateLimited(group, item, max(1, math.ceil(stats.reset_time - time.time())))
