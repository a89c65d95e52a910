"""Housekeeping of the ledger: its retention, and the API's remembered Idempotency-Keys."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from apps.jobs.models import IdempotentRequest, Job
from apps.jobs.services import workers

logger = logging.getLogger(__name__)

#: Rows deleted per statement, so pruning never holds long locks on a busy ledger.
PRUNE_BATCH_SIZE = 1000


def jobs_prune_finished(
    *, retention_days: int | None = None, failed_retention_days: int | None = None
) -> dict[str, int]:
    """Delete finished jobs past their retention (failed ones are kept longer); returns counts."""
    now = timezone.now()
    retention = timedelta(days=retention_days if retention_days is not None else settings.JOBS_RETENTION_DAYS)
    failed_retention = timedelta(
        days=failed_retention_days
        if failed_retention_days is not None
        else settings.JOBS_FAILED_RETENTION_DAYS
    )
    done = (Job.Status.SUCCEEDED, Job.Status.CANCELLED, Job.Status.SKIPPED)
    counts = {
        "finished": _delete_in_batches(status__in=done, finished_at__lt=now - retention),
        "failed": _delete_in_batches(status=Job.Status.FAILED, finished_at__lt=now - failed_retention),
        "idempotency_keys": IdempotentRequest.objects.filter(
            created_at__lt=now - timedelta(hours=settings.JOBS_API_IDEMPOTENCY_HOURS)
        ).delete()[0],
        "workers": workers.workers_prune(),
    }
    logger.info("Pruned jobs: %s.", counts, extra={"action": "jobs_pruned"})
    return counts


def jobs_delete_finished_before(*, before: datetime) -> int:
    """Delete the jobs that finished (any final status) before `before`; active jobs are never deleted."""
    deleted = _delete_in_batches(status__in=Job.FINAL_STATUSES, finished_at__lt=before)
    logger.info("Deleted %d jobs finished before %s.", deleted, before, extra={"action": "jobs_deleted"})
    return deleted


def _delete_in_batches(**lookup: object) -> int:
    total = 0
    while True:
        ids = list(Job.objects.filter(**lookup).values_list("pk", flat=True)[:PRUNE_BATCH_SIZE])
        if not ids:
            return total
        Job.objects.filter(pk__in=ids).delete()
        total += len(ids)
