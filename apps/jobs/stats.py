"""Read-only aggregates of the job ledger for the console's dashboard and the /metrics endpoint.

Every function here is one or two queries whatever the size of the ledger: they run on each dashboard
refresh (every 10 s) and each Prometheus scrape, on ledgers of a million jobs. Windows are read through
the index on finished_at (job_finished) and the active statuses through the status indexes, so the cost
grows with the jobs in the window, not with the ledger.

On PostgreSQL the percentiles and the time buckets are computed in SQL (percentile_cont, date_bin); the
SQLite demo database has neither, and is small, so there they are computed in Python from the rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Count, DateTimeField, F, FloatField, Func, Min, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.jobs.models import Job

Status = Job.Status
#: The outcomes a throughput and a failure rate are made of: cancelled and skipped jobs never ran to
#: an end, so counting them would dilute the failure rate with operator decisions.
FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED)
#: Statuses of a job that waits for a worker (unless a delay or a retry backoff is still running).
WAITING_STATUSES = (Status.PENDING, Status.QUEUED, Status.RETRYING)


@dataclass(frozen=True)
class ActorStats:
    """One actor's finished jobs over a window."""

    actor_name: str
    succeeded: int
    failed: int
    #: Finished jobs per minute over the whole window (not only the minutes the actor ran).
    throughput_per_min: float
    #: Durations (finished_at - started_at) in ms; None when no finished job of the window has both
    #: times (a job failed before it ever started: undecodable, expired or cancelled by its age limit).
    p50_ms: float | None
    p95_ms: float | None

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def failure_rate(self) -> float:
        """Failed / finished, from 0 to 1 (0 for an actor without finished jobs)."""
        return self.failed / self.finished if self.finished else 0.0


@dataclass(frozen=True)
class ThroughputBucket:
    """Jobs that finished in [start, end)."""

    start: datetime
    end: datetime
    succeeded: int
    failed: int

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


def _is_postgresql() -> bool:
    return connection.vendor == "postgresql"


class _PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(fraction) WITHIN GROUP (ORDER BY expression): the interpolated
    percentile. Several of them over the same expression share one sort (PostgreSQL 11+)."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        # A float literal, not a parameter: it is one of a few constants, never user input.
        super().__init__(expression, fraction=f"{float(fraction)!r}", **extra)


def _duration_ms() -> Func:
    """finished_at - started_at in ms (PostgreSQL): NULL while either is unknown, which percentile_cont
    ignores."""
    return Func(
        F("finished_at") - F("started_at"),
        template="(EXTRACT(EPOCH FROM %(expressions)s) * 1000)",
        output_field=FloatField(),
    )


def percentile_cont(ordered: list[float], fraction: float) -> float | None:
    """The percentile as PostgreSQL's percentile_cont computes it: linear interpolation between the two
    closest ranks of the sorted values. The SQLite fallback uses it so both databases agree."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def _finished_between(since: datetime, until: datetime) -> QuerySet[Job]:
    # The range on finished_at first: it is what the job_finished index serves.
    return Job.objects.filter(finished_at__gte=since, finished_at__lt=until, status__in=FINISHED_STATUSES)


def actor_stats(*, since: datetime, until: datetime | None = None) -> list[ActorStats]:
    """Per actor, its jobs that succeeded or failed in [since, until) (until defaults to now), by name.

    PostgreSQL: one query (counts and both percentiles grouped by actor). SQLite: two, the second
    reading the durations of the window.
    """
    until = until or timezone.now()
    minutes = max((until - since).total_seconds() / 60, 1e-9)
    jobs = _finished_between(since, until).order_by().values("actor_name")
    aggregates: dict[str, Any] = {
        "succeeded": Count("pk", filter=Q(status=Status.SUCCEEDED)),
        "failed": Count("pk", filter=Q(status=Status.FAILED)),
    }
    if _is_postgresql():
        aggregates["p50"] = _PercentileCont(_duration_ms(), 0.5)
        aggregates["p95"] = _PercentileCont(_duration_ms(), 0.95)
    rows: list[dict[str, Any]] = [dict(row) for row in jobs.annotate(**aggregates).order_by("actor_name")]
    if not _is_postgresql():
        percentiles = _percentiles_in_python(since, until)
        for row in rows:
            row["p50"], row["p95"] = percentiles.get(row["actor_name"], (None, None))
    return [
        ActorStats(
            actor_name=row["actor_name"],
            succeeded=row["succeeded"],
            failed=row["failed"],
            throughput_per_min=(row["succeeded"] + row["failed"]) / minutes,
            p50_ms=row["p50"],
            p95_ms=row["p95"],
        )
        for row in rows
    ]


def _percentiles_in_python(since: datetime, until: datetime) -> dict[str, tuple[float | None, float | None]]:
    durations: dict[str, list[float]] = defaultdict(list)
    rows = (
        _finished_between(since, until)
        .filter(started_at__isnull=False)
        .order_by()
        .values_list("actor_name", "started_at", "finished_at")
    )
    for actor_name, started_at, finished_at in rows:
        if started_at is None or finished_at is None:  # excluded by the filters; for the type checker
            continue
        durations[actor_name].append((finished_at - started_at).total_seconds() * 1000)
    result: dict[str, tuple[float | None, float | None]] = {}
    for actor_name, values in durations.items():
        values.sort()
        result[actor_name] = (percentile_cont(values, 0.5), percentile_cont(values, 0.95))
    return result


def throughput_series(
    *, since: datetime, buckets: int, until: datetime | None = None
) -> list[ThroughputBucket]:
    """Succeeded and failed jobs per bucket: [since, until) cut into `buckets` equal parts, oldest first.

    Every bucket is returned, empty ones with zeros, so a chart has no gaps. One query; PostgreSQL
    groups by date_bin(width, finished_at, since), SQLite reads the window's finish times.
    """
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    until = until or timezone.now()
    width = (until - since) / buckets
    if width <= timedelta(0):
        raise ValueError("since must be before until")
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    jobs = _finished_between(since, until).order_by()
    if _is_postgresql():
        rows = (
            jobs.annotate(
                bucket=Func(
                    Value(width),
                    F("finished_at"),
                    Value(since),
                    function="date_bin",
                    output_field=DateTimeField(),
                )
            )
            .values("bucket")
            .annotate(
                succeeded=Count("pk", filter=Q(status=Status.SUCCEEDED)),
                failed=Count("pk", filter=Q(status=Status.FAILED)),
            )
        )
        for row in rows:
            index = _bucket_index(row["bucket"], since, width, buckets)
            counts[index][0] += row["succeeded"]
            counts[index][1] += row["failed"]
    else:
        for finished_at, status in jobs.values_list("finished_at", "status"):
            if finished_at is None:  # excluded by the filter; for the type checker
                continue
            counts[_bucket_index(finished_at, since, width, buckets)][status == Status.FAILED] += 1
    return [
        ThroughputBucket(
            start=since + width * index,
            end=since + width * (index + 1),
            succeeded=counts[index][0],
            failed=counts[index][1],
        )
        for index in range(buckets)
    ]


def _bucket_index(moment: datetime, since: datetime, width: timedelta, buckets: int) -> int:
    # Floor division of timedeltas is exact (integer microseconds); the clamp only guards rounding.
    return min(max((moment - since) // width, 0), buckets - 1)


def running_per_queue() -> dict[str, int]:
    """Running jobs per queue, from the ledger: what the dashboard still knows while RabbitMQ is down."""
    return _count_by("queue_name", Job.objects.filter(status=Status.RUNNING))


def delayed_per_queue() -> dict[str, int]:
    """Waiting jobs per queue whose delay or retry backoff has not passed yet, from the ledger."""
    now = timezone.now()
    waiting = Job.objects.filter(status__in=(Status.PENDING, Status.QUEUED, Status.RETRYING))
    return _count_by("queue_name", waiting.filter(Q(scheduled_at__gt=now) | Q(next_retry_at__gt=now)))


def _count_by(field: str, jobs: QuerySet[Job]) -> dict[str, int]:
    rows = jobs.order_by().values_list(field).annotate(count=Count("pk")).values_list(field, "count")
    return {key: count for key, count in rows}


def jobs_per_status_and_actor(*, finished_since: datetime) -> dict[tuple[str, str], int]:
    """(status, actor) -> jobs: every job in an active status, and the final ones finished since
    `finished_since`.

    One GROUP BY query whose WHERE is "active status OR finished_at in the window": PostgreSQL reads it
    as a BitmapOr of the status index and the finished_at index, so it does not scan a ledger that keeps
    30 days of finished jobs (counting those all on each scrape is what made it slow).
    """
    rows = (
        Job.objects.filter(Q(status__in=Job.ACTIVE_STATUSES) | Q(finished_at__gte=finished_since))
        .order_by()
        .values_list("status", "actor_name")
        .annotate(count=Count("pk"))
        .values_list("status", "actor_name", "count")
    )
    return {(status, actor_name): count for status, actor_name, count in rows}


def oldest_waiting_per_queue(*, now: datetime | None = None) -> dict[str, datetime]:
    """Per queue, since when its oldest waiting job has been due: the time a worker should have taken it.

    A job waits when it is pending, queued or retrying and neither its delay (scheduled_at) nor its retry
    backoff (next_retry_at) is still running (those are "delayed", as apps.jobs.queues counts them). It
    has been due since its retry time, else its scheduled time, else its creation. One query over the
    active jobs (the status index).
    """
    now = now or timezone.now()
    rows = (
        Job.objects.filter(status__in=WAITING_STATUSES)
        .exclude(Q(scheduled_at__gt=now) | Q(next_retry_at__gt=now))
        .order_by()
        .values("queue_name")
        .annotate(due_since=Min(Coalesce("next_retry_at", "scheduled_at", "created_at")))
        .values_list("queue_name", "due_since")
    )
    return {queue_name: due_since for queue_name, due_since in rows}
