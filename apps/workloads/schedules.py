"""The example workloads' cron timetable: periodic actors, each calling one service."""

from __future__ import annotations

import datetime as dt

import dramatiq
from dramatiq.middleware import CurrentMessage
from periodiq import cron

from apps.jobs.exceptions import PermanentFailure
from apps.workloads import services


@dramatiq.actor(
    actor_name="jobs.cleanup_expired_sessions",  # kept from apps.jobs: queued messages carry this name
    queue_name="default",
    max_retries=3,
    periodic=cron("0 */6 * * *"),  # every 6 hours, on the hour
)
def cleanup_expired_sessions() -> dict[str, int | None]:
    """Delete expired Django sessions."""
    return {"deleted": services.sessions_clear_expired()}


@dramatiq.actor(
    actor_name="jobs.generate_daily_report",  # kept from apps.jobs: queued messages carry this name
    queue_name="reports",
    max_retries=3,
    periodic=cron("0 0 * * *"),  # every day at midnight (TIME_ZONE)
)
def generate_daily_report(day: str | None = None) -> dict[str, int | str]:
    """Create the jobs report of the day before the tick (or of `day`, an ISO date); its save builds it."""
    if day:
        date = dt.date.fromisoformat(day)
    else:
        # The tick's time, not the worker's clock: a tick run late or retried after midnight still
        # reports the day before it. A manual send has no tick and falls back to the clock.
        message = CurrentMessage.get_current_message()
        scheduled_at = message.options.get("scheduled_at") if message is not None else None
        date = services.report_day_for_tick(scheduled_at=scheduled_at)
    report = services.report_create_daily(day=date)
    return {"report_id": report.pk, "day": date.isoformat()}


@dramatiq.actor(
    actor_name="jobs.sync_external_data",  # kept from apps.jobs: queued messages carry this name
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
