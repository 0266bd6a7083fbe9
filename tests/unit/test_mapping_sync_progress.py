"""What a running sync job reports: running, or waiting (and until when) while its company's budget holds it up."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from services.mapping.sync_jobs import Progress


def test_a_job_free_to_call_procore_is_running() -> None:
    job = uuid.uuid4()
    report = Progress(done=1, total=3, held_up_s=lambda: 0.2).snapshot(job)
    assert (report.job_id, report.state, report.done, report.total, report.waiting_until) == (
        job,
        "running",
        1,
        3,
        None,
    )


def test_a_job_held_up_by_the_rate_limit_is_waiting_until_the_reset() -> None:
    report = Progress(total=1, held_up_s=lambda: 600.0).snapshot(uuid.uuid4())
    assert report.state == "waiting"
    assert report.waiting_until is not None
    assert abs((report.waiting_until - datetime.now(UTC)).total_seconds() - 600.0) < 5


def test_a_job_backing_off_after_an_outage_is_waiting_with_the_reason() -> None:
    progress = Progress(error="Procore is unavailable (503)", retry_at=time.monotonic() + 30)
    report = progress.snapshot(uuid.uuid4())
    assert report.state == "waiting"
    assert report.error == "Procore is unavailable (503)"
    assert report.waiting_until is not None
