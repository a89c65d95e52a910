"""The helper actors call to report progress, written to the job at a bounded rate."""

from __future__ import annotations

import time

from django.conf import settings
from dramatiq.middleware.shutdown import Shutdown

from apps.jobs import runtime, services


def report(current: int, total: int | None = None, message: str = "") -> bool:
    """Report that `current` of `total` units are done; returns whether it was written.

    Call it as often as you like: a write happens at most once per JOBS_PROGRESS_MIN_INTERVAL_S,
    plus the report that reaches `total`. Outside a job (a plain function call) it does nothing.
    It is also a safe point to stop at: see check_stop().
    """
    running = runtime.running_job()
    if running is None:
        return False
    _stop_if_interrupted(running)
    now = time.monotonic()
    done = total is not None and current >= total
    if not done and now - running.progress_written_at < settings.JOBS_PROGRESS_MIN_INTERVAL_S:
        return False
    running.progress_written_at = now
    return services.job_progress_update(
        job_id=running.job_id, attempt=running.started_attempt, current=current, total=total, message=message
    )


def current_attempt() -> int | None:
    """The number (from 1) of the attempt running in this thread, or None outside a job."""
    running = runtime.running_job()
    return running.attempt if running else None


def check_stop() -> None:
    """Raise Shutdown here if the worker is stopping and abandoned this job at its shutdown timeout.

    A stopping worker first asks its abandoned jobs to stop at such a safe point, between two units
    of work, and interrupts them wherever they are only if they do not (a second later): stopped
    here, a job never has its last unit done and then interrupted, to be done again elsewhere.
    progress.report() calls it; call it in long loops that do not report progress.
    """
    running = runtime.running_job()
    if running is not None:
        _stop_if_interrupted(running)


def _stop_if_interrupted(running: runtime.Delivery) -> None:
    if running.interrupted:
        raise Shutdown("The worker is shutting down; the job runs again on another worker.")
