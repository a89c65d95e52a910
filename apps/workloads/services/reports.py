"""Building CSV reports from real data, in batches, with progress."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from apps.jobs.exceptions import PermanentFailure
from apps.jobs.models import Job
from apps.workloads.models import ExternalRecord, Report

logger = logging.getLogger(__name__)

#: Rows read and written per database round trip.
REPORT_BATCH_SIZE = 1000

ProgressCallback = Callable[[int, int, str], Any]
#: What a report type reads: the rows' queryset, the column names, and one row's values from an item.
RowSource = Callable[[dict[str, Any]], tuple[models.QuerySet, list[str], Callable[[Any], list[Any]]]]


def _jobs_rows(filters: dict[str, Any]) -> tuple[models.QuerySet, list[str], Callable[[Any], list[Any]]]:
    queryset = _date_filtered(Job.objects.all(), "created_at", filters)
    if filters.get("status"):
        queryset = queryset.filter(status=filters["status"])
    if filters.get("actor_name"):
        queryset = queryset.filter(actor_name=filters["actor_name"])
    if filters.get("requested_by"):
        queryset = queryset.filter(requested_by_id=filters["requested_by"])
    columns = [
        "id",
        "actor",
        "queue",
        "status",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "duration_s",
        "last_error",
    ]

    def row(job: Job) -> list[Any]:
        duration = job.duration.total_seconds() if job.duration else ""
        return [
            job.pk,
            job.actor_name,
            job.queue_name,
            job.status,
            job.attempts,
            _iso(job.created_at),
            _iso(job.started_at),
            _iso(job.finished_at),
            duration,
            job.last_error[:200],
        ]

    return (
        queryset.only(
            "id",
            "actor_name",
            "queue_name",
            "status",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "last_error",
        ),
        columns,
        row,
    )


def _users_rows(filters: dict[str, Any]) -> tuple[models.QuerySet, list[str], Callable[[Any], list[Any]]]:
    queryset = _date_filtered(get_user_model().objects.all(), "date_joined", filters)
    columns = ["id", "username", "email", "is_staff", "is_active", "date_joined", "last_login"]

    def row(user: Any) -> list[Any]:
        return [
            user.pk,
            user.get_username(),
            user.email,
            user.is_staff,
            user.is_active,
            _iso(user.date_joined),
            _iso(user.last_login),
        ]

    return queryset, columns, row


def _external_rows(filters: dict[str, Any]) -> tuple[models.QuerySet, list[str], Callable[[Any], list[Any]]]:
    queryset = _date_filtered(ExternalRecord.objects.all(), "last_synced_at", filters)
    columns = ["external_id", "first_synced_at", "last_synced_at", "data"]

    def row(record: ExternalRecord) -> list[Any]:
        return [record.external_id, _iso(record.first_synced_at), _iso(record.last_synced_at), record.data]

    return queryset, columns, row


ROW_SOURCES: dict[str, RowSource] = {
    Report.Type.JOBS: _jobs_rows,
    Report.Type.USERS: _users_rows,
    Report.Type.EXTERNAL_RECORDS: _external_rows,
}


def report_build(*, report: Report, progress: ProgressCallback | None = None) -> int:
    """Write the report's CSV file and return its row count; a built report is left as it is."""
    if report.file:
        return report.row_count or 0
    try:
        queryset, columns, row = ROW_SOURCES[report.type](report.filters or {})
    except (KeyError, ValueError) as exc:
        raise PermanentFailure(f"Report {report.pk} cannot be built: {exc}") from exc
    total = queryset.count()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    written = 0
    for batch in _batches(queryset):
        writer.writerows(row(obj) for obj in batch)
        written += len(batch)
        if progress is not None:
            progress(written, total, f"{written} of {total} rows")
    if progress is not None and total == 0:
        progress(0, 0, "no rows")
    name = f"{report.type}-{report.pk}-{timezone.now():%Y%m%d-%H%M%S}.csv"
    report.file.save(name, ContentFile(buffer.getvalue().encode()), save=False)
    report.row_count = written
    report.finished_at = timezone.now()
    report.save(update_fields=["file", "row_count", "finished_at"])
    logger.info("Report %s built: %d rows.", report.pk, written, extra={"action": "report_built"})
    return written


def report_request(*, type: str, filters: dict[str, Any], created_by: Any) -> Report:
    """A new report for `created_by`; saving it submits its build job (triggers.py), after commit.

    A jobs report lists only the creator's own jobs unless they may see every job (jobs.view_job),
    as the API's job list does.
    """
    if type == Report.Type.JOBS and not created_by.has_perm("jobs.view_job"):
        filters = {**filters, "requested_by": created_by.pk}
    return Report.objects.create(type=type, filters=filters, created_by=created_by)


def report_day_for_tick(*, scheduled_at: str | None) -> dt.date:
    """The day a daily report covers: the day before its tick's local date (TIME_ZONE).

    `scheduled_at` is the tick periodiq put in the message (ISO 8601 with its offset), so a tick run
    late or retried after midnight still reports the day before the tick. Without a tick (a manual
    send) it is the day before today by the clock.
    """
    if not scheduled_at:
        return timezone.localdate() - dt.timedelta(days=1)
    try:
        tick = dt.datetime.fromisoformat(scheduled_at)
    except ValueError as exc:
        raise PermanentFailure(f"The tick's scheduled_at {scheduled_at!r} is not an ISO 8601 time.") from exc
    if timezone.is_naive(tick):
        tick = timezone.make_aware(tick)  # a tick without an offset is in TIME_ZONE
    return timezone.localtime(tick).date() - dt.timedelta(days=1)


def report_create_daily(*, day: dt.date) -> Report:
    """The jobs report for `day`, created once however often it is asked for (its save starts the job)."""
    key = f"daily-jobs:{day.isoformat()}"
    existing = Report.objects.filter(key=key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return Report.objects.create(
                key=key,
                type=Report.Type.JOBS,
                filters={"created_from": day.isoformat(), "created_to": day.isoformat()},
            )
    except IntegrityError:
        return Report.objects.get(key=key)


def _batches(queryset: models.QuerySet) -> Iterator[list[Any]]:
    """Keyset pagination by primary key: constant cost per batch, whatever the table's size."""
    last_pk = None
    queryset = queryset.order_by("pk")
    while True:
        page = queryset if last_pk is None else queryset.filter(pk__gt=last_pk)
        batch = list(page[:REPORT_BATCH_SIZE])
        if not batch:
            return
        yield batch
        last_pk = batch[-1].pk


def _date_filtered(queryset: models.QuerySet, field: str, filters: dict[str, Any]) -> models.QuerySet:
    if filters.get("created_from"):
        queryset = queryset.filter(**{f"{field}__date__gte": dt.date.fromisoformat(filters["created_from"])})
    if filters.get("created_to"):
        queryset = queryset.filter(**{f"{field}__date__lte": dt.date.fromisoformat(filters["created_to"])})
    return queryset


def _iso(value: dt.datetime | None) -> str:
    return value.isoformat() if value else ""
