"""The register of worker processes: each one's heartbeat and clean stop, the pruning of old rows, and
the list the console shows.

Every time is taken from the database's clock, as job leases are: a host whose clock is off must not
look stale (or fresh) because of it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from django.conf import settings
from django.db.models import BooleanField, Case, DurationField, ExpressionWrapper, F, Q, Value, When
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from apps.jobs.models import Worker

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.db.models.expressions import CombinedExpression
    from django_stubs_ext import WithAnnotations

logger = logging.getLogger(__name__)

#: How long the console keeps showing a worker that stopped cleanly (unless asked for all).
STOPPED_SHOWN_FOR = timedelta(days=1)
#: Rows of workers not seen for this long are deleted by workers_prune() by default.
PRUNE_AFTER = timedelta(days=7)


class State:
    """A worker's state as the console shows it; the order is the list's (stale ones first)."""

    STALE = "stale"
    RUNNING = "running"
    STOPPED = "stopped"
    ALL = (STALE, RUNNING, STOPPED)


def worker_heartbeat(
    *,
    worker_id: str,
    host: str,
    pid: int,
    queues: list[str],
    threads: int,
    started_at: datetime,
    jobs_in_progress: int,
) -> None:
    """Record that worker process `worker_id` is alive, in one INSERT ... ON CONFLICT DO UPDATE.

    `started_at` is the process's boot by its own clock. It is stored on the database's clock (shifted
    by how long ago it was, measured here), once, when the row is made, so "up for" is right on a host
    whose clock is off.
    """
    uptime = max(timezone.now() - started_at, timedelta(0))
    Worker.objects.bulk_create(
        [
            Worker(
                worker_id=worker_id,
                host=host,
                pid=pid,
                queues=sorted(queues),
                threads=threads,
                started_at=Now() - Value(uptime, output_field=DurationField()),
                last_seen_at=Now(),
                jobs_in_progress=jobs_in_progress,
                stopped_at=None,
            )
        ],
        update_conflicts=True,
        unique_fields=["worker_id"],
        # Not started_at: set once from the first heartbeat, it must not wander with each one.
        update_fields=["host", "pid", "queues", "threads", "last_seen_at", "jobs_in_progress", "stopped_at"],
    )


def worker_stopped(*, worker_id: str) -> None:
    """Record that worker process `worker_id` stopped cleanly (it runs nothing any more)."""
    Worker.objects.filter(worker_id=worker_id).update(
        stopped_at=Now(), last_seen_at=Now(), jobs_in_progress=0
    )


def workers_prune(*, older_than: timedelta = PRUNE_AFTER) -> int:
    """Delete the rows of workers not seen for `older_than` (stopped or dead); returns how many."""
    deleted, _ = Worker.objects.filter(last_seen_at__lt=Now() - older_than).delete()
    if deleted:
        logger.info(
            "Pruned %d workers not seen for %s.", deleted, older_than, extra={"action": "workers_pruned"}
        )
    return deleted


class WorkerAnnotations(TypedDict):
    """What workers_list() adds to each Worker."""

    stale: bool
    state: str
    state_rank: int
    seen_ago: timedelta
    up_for: timedelta


def _lease_start() -> CombinedExpression:
    return Now() - timedelta(seconds=settings.JOBS_LEASE_S)


def workers_list(
    *, include_old_stopped: bool = False
) -> QuerySet[WithAnnotations[Worker, WorkerAnnotations]]:
    """Workers for the console, stale first, then running, then stopped, each by host and pid.

    Annotated, on the database's clock: `state` (State), `stale` (no heartbeat for JOBS_LEASE_S and not
    stopped: dead or stuck), `seen_ago` and `up_for` (until it stopped, for a stopped one). Workers
    that stopped more than STOPPED_SHOWN_FOR ago are left out unless `include_old_stopped`.
    (A read kept beside the writes of the Worker rows it interprets.)
    """
    stale = Q(stopped_at__isnull=True, last_seen_at__lt=_lease_start())
    workers = Worker.objects.annotate(
        stale=ExpressionWrapper(stale, output_field=BooleanField()),
        state=Case(
            When(stopped_at__isnull=False, then=Value(State.STOPPED)),
            When(stale, then=Value(State.STALE)),
            default=Value(State.RUNNING),
        ),
        state_rank=Case(
            When(stopped_at__isnull=False, then=Value(2)),
            When(stale, then=Value(0)),
            default=Value(1),
        ),
        seen_ago=ExpressionWrapper(Now() - F("last_seen_at"), output_field=DurationField()),
        up_for=ExpressionWrapper(
            Coalesce("stopped_at", Now()) - F("started_at"), output_field=DurationField()
        ),
    )
    if not include_old_stopped:
        workers = workers.exclude(stopped_at__lt=Now() - STOPPED_SHOWN_FOR)
    return workers.order_by("state_rank", "host", "pid")
