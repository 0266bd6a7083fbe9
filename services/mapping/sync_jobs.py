"""Runs Procore syncs in the background, beside the consumer: a sync that waits an hour for Procore's rate-limit
reset holds up neither the consumer (it keeps handling commands and heartbeating) nor other accounts' syncs.

The sync command only queues a job (`adapters.sync_jobs`); this runner claims queued jobs (up to `max_jobs`
at a time, one per account), runs each as its own task and, every `report_interval_s`, renews their leases
and writes their progress: `progress_done`/`progress_total`, and the state `waiting` with `waiting_until`
while Procore's rate limit (or an outage) holds a job up. A job that fails because something is unavailable
is retried with capped backoff for as long as it takes; its outcome is recorded as the command's, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from services.mapping.adapters.sync_jobs import ClaimedJob, JobLost, JobProgress, SyncJobStore
from shared.background import RepeatingTask
from shared.transient import transient_cause

log = logging.getLogger(__name__)

WAITING_AFTER_S = 1.0
"""A job whose next Procore call is held up longer than this shows as waiting."""


@dataclass
class Progress:
    """What a running job tells the dashboard; read by the runner at each report."""

    done: int = 0
    total: int | None = None
    error: str | None = None
    retry_at: float = 0.0
    """After a failed round: the next try (monotonic)."""
    held_up_s: Callable[[], float] = field(default=lambda: 0.0)
    """Seconds until the job's next Procore call may go (its company's rate budget)."""

    def snapshot(self, job_id: UUID) -> JobProgress:
        wait = max(self.held_up_s(), self.retry_at - time.monotonic())
        waiting = wait > WAITING_AFTER_S
        until = datetime.now(UTC) + timedelta(seconds=wait) if waiting else None
        return JobProgress(job_id, "waiting" if waiting else "running", self.done, self.total, until, self.error)


RunJob = Callable[[ClaimedJob, Progress, SyncJobStore], Awaitable[None]]
"""Runs a job to its end, recording the outcome and `store.finish`-ing the job in one transaction; raises
what is transient (the runner retries)."""


class SyncJobRunner:
    def __init__(
        self,
        store: SyncJobStore,
        run: RunJob,
        *,
        max_jobs: int = 4,
        report_interval_s: float = 1.0,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
    ) -> None:
        self._store = store
        self._run = run
        self._max_jobs = max_jobs
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._jobs: dict[UUID, tuple[asyncio.Task[None], Progress]] = {}
        # A failed tick is tried again at the next one (no growing backoff: the jobs' progress reports are due).
        self._loop = RepeatingTask(
            self._tick,
            name="mapping-sync-jobs",
            what="claiming and reporting sync jobs",
            log=log,
            interval_s=report_interval_s,
            max_backoff_s=report_interval_s,
        )

    @property
    def healthy(self) -> bool:
        """False while jobs can be neither claimed nor reported (the database is away)."""
        return self._loop.healthy

    @property
    def running(self) -> list[UUID]:
        return list(self._jobs)

    def wake(self) -> None:
        """A job was queued: look for it now rather than at the next tick."""
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        tasks = [task for task, _ in self._jobs.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # the leases run out by themselves
            await self._store.release(list(self._jobs))
        self._jobs.clear()

    async def _tick(self) -> None:
        if self._jobs:
            ours = await self._store.report([p.snapshot(job_id) for job_id, (_, p) in self._jobs.items()])
            for job_id in [j for j in self._jobs if j not in ours]:
                task, _ = self._jobs.pop(job_id)
                if not task.done():
                    log.warning("sync job %s was taken over by another instance; stopping here", job_id)
                    task.cancel()
        for job in await self._store.claim(self._max_jobs - len(self._jobs)):
            progress = Progress()
            task = asyncio.create_task(self._work(job, progress), name=f"sync-job-{job.job_id}")
            self._jobs[job.job_id] = (task, progress)

    async def _work(self, job: ClaimedJob, progress: Progress) -> None:
        failures = 0
        try:
            while True:
                try:
                    await self._run(job, progress, self._store)
                    return
                except JobLost:
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    failures += 1
                    delay = min(self._retry_base_s * 2 ** (failures - 1), self._retry_max_s)
                    progress.error = str(error)[:300]
                    progress.retry_at = time.monotonic() + delay
                    if transient_cause(error) is None:
                        log.exception("sync job %s failed; trying again in %.0f s", job.job_id, delay)
                    else:
                        log.warning("sync job %s waits (%s); trying again in %.0f s", job.job_id, error, delay)
                    await asyncio.sleep(delay)
                    progress.error = None
        finally:
            entry = self._jobs.get(job.job_id)
            if entry is not None and entry[0] is asyncio.current_task():
                del self._jobs[job.job_id]
            self._loop.wake()  # a slot is free
