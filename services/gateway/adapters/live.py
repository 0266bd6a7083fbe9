"""Live updates: one PostgreSQL LISTEN connection per gateway process, fanned out to every dashboard listening.

The aggregator's and the mapping service's triggers NOTIFY at commit (aggregator migration 007, mapping migration
006) with the account and what changed. This hub holds the only database connection live updates use, whatever
the number of clients; each client gets a bounded queue of its own account's events. A client too slow to keep up
loses its backlog and gets one `resync` event instead (it reloads what it shows). A lost connection is
re-established with backoff, and every client gets `resync` then, since notifications may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveEvent:
    """One server-sent event: its name and JSON data."""

    event: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        return f"event: {self.event}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n".encode()


BYE = LiveEvent("bye", {"reason": "The server is restarting: reconnect in a moment."})
RESYNC = LiveEvent("resync", {"reason": "Some changes may have been missed: reload what is shown."})


def event_of(channel_kind: str, payload: str) -> tuple[str, LiveEvent] | None:
    """(account, event) of one notification; None for a payload that is not ours."""
    try:
        body = json.loads(payload)
        account = str(body["account_id"])
    except (ValueError, KeyError, TypeError):
        return None
    if channel_kind == "entries":
        return account, LiveEvent("entries", {"module": body.get("module"), "dates": body.get("dates")})
    return account, LiveEvent("mapping", {"what": body.get("what")})


class ChangeWatcher(Protocol):
    def changed(self, account_id: str, module: str | None, dates: Sequence[str] | None) -> None: ...

    def lost(self) -> None: ...


class LiveHub:
    """Subscribe clients per account; one LISTEN connection feeds them all."""

    def __init__(self, dsn: str, aggregator_schema: str, mapping_schema: str, queue_size: int = 256) -> None:
        self._dsn = dsn
        self._channels = {f"{aggregator_schema}.entries": "entries", f"{mapping_schema}.mapping": "mapping"}
        self._queue_size = queue_size
        self._clients: dict[str, set[asyncio.Queue[LiveEvent]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closing = False
        self._watchers: list[ChangeWatcher] = []

    def watch(self, watcher: ChangeWatcher) -> None:
        """Also tell `watcher` of every entries change (any account) and of every lost connection."""
        self._watchers.append(watcher)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-listen")

    async def wait_listening(self, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await self._listening.wait()

    def close_streams(self) -> None:
        """The server is shutting down: every stream ends now (a client reconnects elsewhere or later), and new ones
        end at once. Without this an open stream would keep the server from stopping."""
        self._closing = True
        for queues in self._clients.values():
            for queue in queues:
                self._offer(queue, BYE)

    @property
    def closing(self) -> bool:
        return self._closing

    async def stop(self) -> None:
        self.close_streams()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def clients(self) -> int:
        return sum(len(q) for q in self._clients.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, account_id: str) -> AsyncIterator[asyncio.Queue[LiveEvent]]:
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(self._queue_size)
        self._clients[account_id].add(queue)
        try:
            yield queue
        finally:
            self._clients[account_id].discard(queue)
            if not self._clients[account_id]:
                del self._clients[account_id]

    def _offer(self, queue: asyncio.Queue[LiveEvent], event: LiveEvent) -> None:
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            # Behind by a whole queue: drop the backlog, ask it to reload instead.
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(RESYNC)

    def _deliver(self, channel: str, payload: str) -> None:
        kind = self._channels.get(channel)
        found = event_of(kind, payload) if kind else None
        if found is None:
            return
        account, event = found
        if event.event == "entries":
            for watcher in self._watchers:
                watcher.changed(account, event.data.get("module"), event.data.get("dates"))
        for queue in tuple(self._clients.get(account, ())):
            self._offer(queue, event)

    def _on_notification(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._deliver(channel, payload)

    async def _run(self) -> None:
        delay = 0.5
        first = True
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, server_settings={"application_name": "gateway-live"})
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self._channels:
                    await conn.add_listener(channel, self._on_notification)
                self._listening.set()
                if not first:
                    for queues in self._clients.values():
                        for queue in queues:
                            self._offer(queue, RESYNC)
                first, delay = False, 0.5
                while not lost.is_set():
                    # A quiet connection may die silently (network): check it now and then.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=15.0)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=5.0)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
                log.warning("live updates: database connection lost (%s); reconnecting", type(error).__name__)
            finally:
                self._listening.clear()
                for watcher in self._watchers:
                    watcher.lost()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2.0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
