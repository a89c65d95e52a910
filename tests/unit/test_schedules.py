"""The jobs system's own periodic actors: pruning the ledger."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from apps.jobs import services
from apps.jobs.models import Job
from tests.unit.conftest import run_job

pytestmark = pytest.mark.django_db(transaction=True)

Status = Job.Status


def test_prune_finished_jobs__deletes_old_finished_jobs_and_keeps_young_failed_ones(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, job_factory: Callable[..., Job], settings: Any
) -> None:
    # Given jobs finished at various ages (30-day retention, 90 days for failed jobs)
    settings.JOBS_RETENTION_DAYS = 30
    settings.JOBS_FAILED_RETENTION_DAYS = 90
    now = timezone.now()

    def finished(status: str, days_ago: float) -> Job:
        return job_factory(status=status, finished_at=now - dt.timedelta(days=days_ago))

    old_succeeded = finished(Status.SUCCEEDED, 31)
    old_cancelled = finished(Status.CANCELLED, 45)
    old_skipped = finished(Status.SKIPPED, 60)
    young_succeeded = finished(Status.SUCCEEDED, 29)
    failed_past_finished_retention = finished(Status.FAILED, 45)
    failed_past_failed_retention = finished(Status.FAILED, 91)
    still_queued = job_factory(status=Status.QUEUED)
    Job.objects.filter(pk=still_queued.pk).update(created_at=now - dt.timedelta(days=365))

    # When the prune job runs
    job = services.job_submit(actor="jobs.prune_finished_jobs")
    job = run_job(stub_broker, stub_worker, job)

    # Then only finished jobs past their retention are gone
    assert job.status == Status.SUCCEEDED
    assert job.result == {"finished": 3, "failed": 1, "idempotency_keys": 0, "workers": 0}
    remaining = set(Job.objects.values_list("pk", flat=True))
    assert remaining == {
        young_succeeded.pk,
        failed_past_finished_retention.pk,
        still_queued.pk,
        job.pk,
    }
    for gone in (old_succeeded, old_cancelled, old_skipped, failed_past_failed_retention):
        assert gone.pk not in remaining
