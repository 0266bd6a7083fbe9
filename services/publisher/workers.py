"""Per-company workers over the attempt log, one instance per company at a time (leases), companies side by side.

The Kafka subscriber only stores a request and wakes its company's worker, so a company that
waits out a rate limit, a slow Procore or an outage never holds up another company's requests
or the consumer. A worker runs only while this instance holds the company's lease
(`leasing.LeaseKeeper`, renewed every third of the TTL): it works the company's requests in
arrival order, one Procore call at a time, and releases the lease when the company has no work
left (or hands it over when another instance should take its share). A worker waits for its
company's budget *before* taking one of `max_active` slots, so companies that are waiting do not
crowd out the ones that may go.

A round that fails because something is unavailable (Procore, the token endpoint, the database, a
lease that could not be renewed) leaves the request where it is; the worker backs off (capped
exponential) and tries the same request again, for as long as it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from services.publisher.adapters.attempts import Pending
from services.publisher.adapters.procore import MaybeCreated
from services.publisher.failures import message_for
from services.publisher.lease import Lease, LeaseLost, backoff_s
from services.publisher.leasing import Changes, LeaseKeeper
from shared.procore import ProcoreError
from shared.transient import transient_cause

log = logging.getLogger(__name__)
MAX_HOLDS = 4


class CompanyWorkers:
    def __init__(
        self,
        keeper: LeaseKeeper,
        pending: Callable[[int, int], Awaitable[list[Pending]]],
        process: Callable[[Pending, Lease], Awaitable[object]],
        ready: Callable[[int], Awaitable[None]],
        *,
        renew_interval_s: float,
        takeover_grace_s: float,
        max_active: int = 64,
        batch_size: int = 20,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        process_run: Callable[[list[Pending], Lease], Awaitable[object]] | None = None,
        runs: Callable[[list[Pending], bool], list[list[int]]] | None = None,
    ) -> None:
        self._keeper = keeper
        self._pending = pending
        self._process = process
        self._process_run = process_run
        """Several requests sent with one Procore call (bulk creates); `runs` says which go together."""
        self._runs = runs
        self._held: dict[int, int] = {}
        """Rounds in a row a company held back a partial bulk run to fill it (bounded by `MAX_HOLDS`)."""
        self._ready = ready
        self._renew_interval_s = renew_interval_s
        self._grace_s = takeover_grace_s
        self._active = asyncio.Semaphore(max_active)
        self._batch_size = batch_size
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._dirty: set[int] = set()
        self._to_claim: set[int] = set()
        self._claiming: asyncio.Task[None] | None = None
        self._keeping: asyncio.Task[None] | None = None
        self._in_flight: set[int] = set()
        self.paused: dict[int, str] = {}
        """Companies whose last round failed (the reason): their worker is backing off."""
        self.leases_healthy = True
        """False while the leases cannot be renewed (the database is away)."""

    @property
    def working(self) -> list[int]:
        return sorted(self._tasks)

    def wake(self, company_id: int) -> None:
        """New work for a company: make its worker look again, or try to claim the company."""
        self._dirty.add(company_id)
        if self._keeping is None:
            return  # not started yet: the first tick claims what has work
        if company_id in self._tasks:
            return
        self._to_claim.add(company_id)
        if self._claiming is None or self._claiming.done():
            self._claiming = asyncio.create_task(self._claim_woken(), name="publisher-claim")

    async def start(self) -> None:
        """Claim this instance's share of whatever has work (a takeover resumes and reconciles it), then keep going."""
        with contextlib.suppress(Exception):  # the database may be away: the loop keeps trying
            self._apply(await self._keeper.tick())
        self._keeping = asyncio.create_task(self._keep(), name="publisher-leases")

    async def stop(self) -> None:
        """Stop working and give every lease back, so another instance continues at once."""
        for task in (self._keeping, self._claiming):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._keeping = self._claiming = None
        in_flight = set(self._in_flight)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lease in list(self._keeper.held.values()):
            # a Procore call cut off mid-way may still land: the next owner waits a little before looking for it
            quiet = self._grace_s if lease.company_id in in_flight else 0.0
            try:
                await self._keeper.release(lease, idle=False, quiet_s=quiet)
            except Exception as error:  # the lease expires by itself
                log.warning("could not release the lease of company %s: %r", lease.company_id, error)

    def _apply(self, changes: Changes) -> None:
        for lease in changes.lost:
            task = self._tasks.get(lease.company_id)
            if task is not None:
                task.cancel()
        for lease, quiet_s in changes.gained:
            self._run(lease, quiet_s)
        # A held lease always has its worker; should one ever have ended without giving its lease up, the company
        # would be renewed forever and never worked.
        for lease in list(self._keeper.held.values()):
            if lease.company_id not in self._tasks and not lease.lost:
                log.warning("company %s had no worker; starting one", lease.company_id)
                self._run(lease, 0.0)

    def _run(self, lease: Lease, quiet_s: float) -> None:
        old = self._tasks.get(lease.company_id)
        if old is not None and not old.done():
            old.cancel()
        self._tasks[lease.company_id] = asyncio.create_task(
            self._work(lease, quiet_s), name=f"publisher-{lease.company_id}"
        )

    async def _keep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                self._apply(await self._keeper.tick())
                self.leases_healthy = True
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Leases run out locally (no Procore write) and are renewed on the next tick that works.
                self.leases_healthy = False
                log.warning("could not renew the publisher's leases: %r", error)
            # start to start: a tick slowed down by a busy event loop does not push the next one back as well
            await asyncio.sleep(max(0.0, self._renew_interval_s - (loop.time() - started)))

    async def _claim_woken(self) -> None:
        while self._to_claim:
            companies = sorted(self._to_claim)
            self._to_claim.clear()
            try:
                gained = await self._keeper.claim([c for c in companies if c not in self._tasks])
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the next tick claims them
                log.warning("could not claim companies %s: %r", companies, error)
                return
            for lease, quiet_s in gained:
                self._run(lease, quiet_s)

    def _plan(self, company_id: int, batch: list[Pending]) -> list[list[int]]:
        """Which requests of the batch go together (bulk runs), in the order they are worked. A partial run is held
        back while more requests are pending than were read (a few rounds at most), so that runs fill up."""
        if self._runs is None or self._process_run is None:
            return [[i] for i in range(len(batch))]
        hold = len(batch) >= self._batch_size and self._held.get(company_id, 0) < MAX_HOLDS
        runs = self._runs(batch, hold)
        held = sum(len(run) for run in runs) < len(batch)
        self._held[company_id] = self._held.get(company_id, 0) + 1 if held else 0
        return runs

    async def _work(self, lease: Lease, quiet_s: float) -> None:  # noqa: C901 - the worker loop's outcomes kept together under one lease (fencing)
        company_id = lease.company_id
        current = asyncio.current_task()
        failures = 0
        try:
            if quiet_s > 0:
                log.info("company %s: waiting %.1f s for a write of the previous owner to land", company_id, quiet_s)
                await asyncio.sleep(quiet_s)
            while not lease.lost:
                try:
                    if lease.handing_over:
                        await self._keeper.release(lease, idle=False)
                        return
                    self._dirty.discard(company_id)
                    batch = await self._pending(company_id, self._batch_size)
                    if not batch:
                        if company_id in self._dirty:
                            continue
                        if await self._keeper.release(lease, idle=True):
                            return
                        continue  # more work arrived through another instance
                    runs = self._plan(company_id, batch)
                    for run in runs:
                        if lease.lost or lease.handing_over:
                            break
                        await self._ready(company_id)
                        async with self._active:
                            self._in_flight.add(company_id)
                            try:
                                if len(run) > 1 and self._process_run is not None:
                                    await self._process_run([batch[i] for i in run], lease)
                                else:
                                    await self._process(batch[run[0]], lease)
                            finally:
                                self._in_flight.discard(company_id)
                        failures = 0
                        self.paused.pop(company_id, None)
                except LeaseLost:
                    log.warning("company %s was taken over by another instance; stopping its worker", company_id)
                    self._keeper.forget(lease)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    failures += 1
                    delay = backoff_s(failures, self._retry_base_s, self._retry_max_s) * random.uniform(0.8, 1.0)
                    self.paused[company_id] = repr(error)[:300]
                    if isinstance(error, ProcoreError | MaybeCreated):
                        log.warning(
                            "company %s paused: %s; trying again in %.1f s", company_id, message_for(error), delay
                        )
                    elif transient_cause(error) is not None:
                        log.warning("company %s paused (%r); trying again in %.1f s", company_id, error, delay)
                    else:
                        log.exception("company %s: a round failed; trying again in %.1f s", company_id, delay)
                    await asyncio.sleep(delay)
        finally:
            self.paused.pop(company_id, None)
            if self._tasks.get(company_id) is current:
                del self._tasks[company_id]
            # work stored here while this worker was giving the lease up: claim the company again
            if company_id in self._dirty and self._keeping is not None and company_id not in self._tasks:
                self.wake(company_id)
