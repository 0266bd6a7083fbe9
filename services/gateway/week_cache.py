"""Week views kept in memory (per gateway process) until the entries under them change.

A week view of a big account reads tens of thousands of entries; dashboards of one account ask for the same few
weeks again and again. The aggregator already says when entries change (NOTIFY per account, module and days at
commit; the `LiveHub` hears it), so an answer stays valid until then:

- a change of (account, module, dates) drops the views of that account and module whose week holds one of the dates
  (all its weeks when `dates` is null); a view computed while such a change arrived is not kept (the generation of
  (account, module) moved), so nothing older than a change it missed is ever stored;
- without the LISTEN connection nothing is served or kept, and a lost connection empties the cache (changes may have
  been missed);
- names (job sites, cost codes) change without an entries notification: an answer is kept at most `ttl_s`, which
  bounds how long a renamed job site keeps its old name in a cached week;
- at most `max_entries` views (least recently used go first).

No I/O: the owner feeds it changes and asks `usable()` (whether the LISTEN connection is up).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from shared.entry_status import EntryStatus
from shared.events import Module


@dataclass(frozen=True)
class WeekKey:
    account_id: str
    module: str
    week_start: date
    statuses: tuple[str, ...]
    q: str
    offset: int
    limit: int | None

    @classmethod
    def of(
        cls,
        account_id: str,
        module: Module,
        week_start: date,
        statuses: Sequence[EntryStatus],
        q: str,
        offset: int,
        limit: int | None,
    ) -> WeekKey:
        return cls(account_id, module.value, week_start, tuple(sorted({s.value for s in statuses})), q, offset, limit)


@dataclass(frozen=True)
class Ticket:
    """What a computation saw when it started: it may store its answer only if nothing moved since."""

    epoch: int
    generation: int


class WeekCache:
    def __init__(
        self,
        usable: Callable[[], bool],
        max_entries: int = 512,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._usable = usable
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._views: OrderedDict[WeekKey, tuple[float, bytes]] = OrderedDict()
        self._generations: dict[tuple[str, str], int] = {}
        self._epoch = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._views)

    def get(self, key: WeekKey) -> bytes | None:
        if not self._usable():
            return None
        found = self._views.get(key)
        if found is None or self._clock() - found[0] > self._ttl:
            if found is not None:
                del self._views[key]
            self.misses += 1
            return None
        self._views.move_to_end(key)
        self.hits += 1
        return found[1]

    def ticket(self, key: WeekKey) -> Ticket:
        return Ticket(self._epoch, self._generations.setdefault((key.account_id, key.module), 0))

    def put(self, key: WeekKey, ticket: Ticket, body: bytes) -> bool:
        """Keep `body` unless a change of its account and module (or a lost connection) came since `ticket`."""
        if self._max <= 0 or not self._usable() or ticket != self.ticket(key):
            return False
        self._views[key] = (self._clock(), body)
        self._views.move_to_end(key)
        while len(self._views) > self._max:
            self._views.popitem(last=False)
        return True

    def changed(self, account_id: str, module: str | None, dates: Sequence[str] | None) -> None:
        """Entries of (account, module) changed on `dates` (ISO days; None: any day; module None: any module)."""
        for (account, mod), generation in list(self._generations.items()):
            if account == account_id and (module is None or mod == module):
                self._generations[(account, mod)] = generation + 1
        try:
            days = None if dates is None else {date.fromisoformat(str(d)) for d in dates}
        except ValueError:  # not ours to judge: forget every week of the module instead
            days = None
        for key in [k for k in self._views if k.account_id == account_id and (module is None or k.module == module)]:
            if days is None or any(key.week_start <= d <= key.week_start + timedelta(days=6) for d in days):
                del self._views[key]

    def lost(self) -> None:
        """Notifications may have been missed: forget everything, and whatever is being computed now."""
        self._epoch += 1
        self._views.clear()
