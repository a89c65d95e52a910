"""Whether a running job's worker lives: heartbeats, leases on the database's clock, the orphan sweep."""

from __future__ import annotations

import functools
import logging
import operator
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from django.conf import settings
from django.db.models import Exists, Q
from django.db.models.functions import Now

from apps.jobs import runtime
from apps.jobs.models import Job
from apps.jobs.services import ledger

if TYPE_CHECKING:
    from django.db.models.expressions import CombinedExpression

logger = logging.getLogger(__name__)


def _lease_start() -> CombinedExpression:
    # The database's clock judges every lease: hosts' clocks may disagree, its own cannot.
    return Now() - timedelta(seconds=settings.JOBS_LEASE_S)


def job_heartbeat(*, running: list[tuple[UUID | str, int]]) -> int:
    """Renew the lease of the attempts this process runs; returns how many rows were touched.

    Fenced by attempt: a worker that lost its job to a newer attempt must not keep that attempt's
    lease alive.
    """
    if not running:
        return 0
    attempts = functools.reduce(operator.or_, (Q(pk=job_id, attempts=n) for job_id, n in running))
    return Job.objects.filter(attempts, status=Job.Status.RUNNING).update(heartbeat_at=Now())


def attempt_is_alive(job: Job) -> bool:
    """Whether the worker running the job's latest attempt still has it (so a new delivery is a duplicate).

    In this process, the thread claims tell for certain. Elsewhere, an expired lease means lost;
    otherwise a worker on this host is asked for by pid and start time (a reused pid is another
    process), and one on another host is trusted while its lease lasts.
    """
    attempt = (
        job.attempt_set.filter(number=job.attempts)
        .annotate(lease_fresh=Exists(Job.objects.filter(pk=job.pk, heartbeat_at__gte=_lease_start())))
        .only("worker_id")
        .first()
    )
    if attempt is None:
        return False
    if runtime.is_this_process(attempt.worker_id):
        return runtime.claimed_by_another_thread(job.pk)
    if not attempt.lease_fresh:
        return False
    alive = runtime.process_is_alive(attempt.worker_id)
    return True if alive is None else alive


def jobs_recover_orphans(*, limit: int = 100) -> int:
    """Retry or fail running jobs whose lease expired; returns how many."""
    stale = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=_lease_start()).values_list(
        "pk", "attempts"
    )
    recovered = 0
    for job_id, attempt in list(stale[:limit]):
        if ledger.job_recover_orphan(job_id=job_id, attempt=attempt) is not None:
            recovered += 1
    return recovered
