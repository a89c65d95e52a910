"""The whole cron timetable: periodic actors, each calling one service (a doubled tick is harmless)."""

from __future__ import annotations

import datetime as dt

import dramatiq
from django.utils import timezone
from periodiq import cron

from apps.jobs import services
from apps.jobs.exceptions import PermanentFailure


@dramatiq.actor(
    actor_name="jobs.cleanup_expired_sessions",
    queue_name="default",
    max_retries=3,
    periodic=cron("0 */6 * * *"),  # every 6 hours, on the hour
)
def cleanup_expired_sessions() -> dict[str, int | None]:
    """Delete expired Django sessions."""
    return {"deleted": services.sessions_clear_expired()}


@dramatiq.actor(
    actor_name="jobs.generate_daily_report",
    queue_name="reports",
    max_retries=3,
    periodic=cron("0 0 * * *"),  # every day at midnight (TIME_ZONE)
)
def generate_daily_report(day: str | None = None) -> dict[str, int | str]:
    """Create yesterday's jobs report (or `day`'s, an ISO date); its save starts generate_report."""
    date = dt.date.fromisoformat(day) if day else timezone.localdate() - dt.timedelta(days=1)
    report = services.report_create_daily(day=date)
    return {"report_id": report.pk, "day": date.isoformat()}


@dramatiq.actor(
    actor_name="jobs.sync_external_data",
    queue_name="default",
    max_retries=5,
    min_backoff=30_000,
    time_limit=10 * 60_000,
    throws=(PermanentFailure,),
    periodic=cron("0 * * * *"),  # every hour, on the hour
)
def sync_external_data(url: str | None = None) -> dict[str, int]:
    """Upsert the records of the external HTTP source (SYNC_SOURCE_URL, or `url`)."""
    return services.external_records_sync(url=url)


@dramatiq.actor(
    actor_name="jobs.prune_finished_jobs",
    queue_name="default",
    max_retries=3,
    periodic=cron("30 3 * * *"),  # every day at 03:30
)
def prune_finished_jobs() -> dict[str, int]:
    """Delete finished jobs past JOBS_RETENTION_DAYS (failed ones past JOBS_FAILED_RETENTION_DAYS)."""
    return services.jobs_prune_finished()
