"""The jobs system's own timetable: periodic actors, each calling one service (a doubled tick is harmless).

Every app keeps its own periodic actors in its schedules.py, found by DRAMATIQ_AUTODISCOVER_MODULES.
"""

from __future__ import annotations

import dramatiq
from periodiq import cron

from apps.jobs import services


@dramatiq.actor(
    actor_name="jobs.prune_finished_jobs",
    queue_name="default",
    max_retries=3,
    periodic=cron("30 3 * * *"),  # every day at 03:30
)
def prune_finished_jobs() -> dict[str, int]:
    """Delete finished jobs past JOBS_RETENTION_DAYS (failed ones past JOBS_FAILED_RETENTION_DAYS)."""
    return services.jobs_prune_finished()
