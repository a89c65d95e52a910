"""The helper actors call to report progress, written to the job at a bounded rate."""

from __future__ import annotations

import time

from django.conf import settings

from apps.jobs import runtime, services


def report(current: int, total: int | None = None, message: str = "") -> bool:
    """Report that `current` of `total` units are done; returns whether it was written.

    Call it as often as you like: a write happens at most once per JOBS_PROGRESS_MIN_INTERVAL_S,
    plus the report that reaches `total`. Outside a job (a plain function call) it does nothing.
    """
    running = runtime.current()
    if running is None:
        return False
    now = time.monotonic()
    done = total is not None and current >= total
    if not done and now - running.progress_written_at < settings.JOBS_PROGRESS_MIN_INTERVAL_S:
        return False
    running.progress_written_at = now
    return services.job_progress_update(
        job_id=running.job_id, attempt=running.attempt, current=current, total=total, message=message
    )


def current_attempt() -> int | None:
    """The number (from 1) of the attempt running in this thread, or None outside a job."""
    running = runtime.current()
    return running.attempt if running else None
