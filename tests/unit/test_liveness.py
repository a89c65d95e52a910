"""Liveness: leases on the database's clock, heartbeats fenced by attempt, dead workers told from live."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from unittest import mock

import pytest
from django.db.models.functions import Now
from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import Job, JobAttempt
from tests.unit.conftest import running_job, worker_id_here

Status = Job.Status


@pytest.mark.django_db
def test_jobs_recover_orphans__retries_jobs_whose_lease_expired(
    job_factory: Callable[..., Job], settings
) -> None:
    settings.JOBS_LEASE_S = 60
    orphan = running_job(job_factory, worker="gone:b:4242:1", heartbeat_age_s=300)
    alive = running_job(job_factory, worker="busy:b:4242:1", heartbeat_age_s=5)
    exhausted = running_job(job_factory, worker="gone:b:4242:1", heartbeat_age_s=300, max_retries=0)
    assert services.jobs_recover_orphans() == 2
    orphan.refresh_from_db()
    alive.refresh_from_db()
    exhausted.refresh_from_db()
    assert (orphan.status, orphan.relay_after is not None) == (Status.RETRYING, True)
    assert orphan.attempt_set.get().outcome == JobAttempt.Outcome.WORKER_LOST
    assert alive.status == Status.RUNNING
    assert exhausted.status == Status.FAILED and exhausted.last_error.startswith("Worker lost")


@pytest.mark.django_db
def test_job_start__a_reused_pid_on_this_host_is_not_the_dead_worker(job_factory: Callable[..., Job]) -> None:
    # Hole 3: after a container restart the dead worker's pid belongs to a live sibling (here pid 1,
    # which always lives, with another start time): the redelivery must take the job over.
    job = running_job(job_factory, worker=worker_id_here(1, start="999999999"), heartbeat_age_s=0)
    started = services.job_start(job_id=job.pk, redelivered=True)
    assert started is not None and started.attempts == 2


@pytest.mark.django_db
def test_job_start__a_live_worker_whose_lease_expired_loses_the_job(
    job_factory: Callable[..., Job], settings
) -> None:
    # Hole 3: the lease wins over a pid that answers.
    settings.JOBS_LEASE_S = 60
    job = running_job(job_factory, worker=worker_id_here(1), heartbeat_age_s=300)
    started = services.job_start(job_id=job.pk, redelivered=True)
    assert started is not None and started.attempts == 2


@pytest.mark.django_db
def test_job_start__a_live_worker_on_this_host_with_a_fresh_lease_keeps_the_job(
    job_factory: Callable[..., Job],
) -> None:
    job = running_job(job_factory, worker=worker_id_here(1), heartbeat_age_s=0)
    assert services.job_start(job_id=job.pk, redelivered=True) is None


@pytest.mark.django_db
def test_jobs_recover_orphans__a_live_pid_on_this_host_does_not_save_an_expired_lease(
    job_factory: Callable[..., Job], settings
) -> None:
    settings.JOBS_LEASE_S = 60
    job = running_job(job_factory, worker=worker_id_here(1), heartbeat_age_s=300)
    assert services.jobs_recover_orphans() == 1
    job.refresh_from_db()
    assert job.status == Status.RETRYING


@pytest.mark.django_db
def test_job_heartbeat__renews_only_the_attempt_the_worker_runs(job_factory: Callable[..., Job]) -> None:
    # Hole 7: a worker that lost the job to attempt 2 kept attempt 2's lease alive.
    old = timezone.now() - timedelta(minutes=5)
    job = job_factory(status=Status.RUNNING, attempts=2, heartbeat_at=old)
    assert services.job_heartbeat(running=[(job.pk, 1)]) == 0
    job.refresh_from_db()
    assert job.heartbeat_at == old
    assert services.job_heartbeat(running=[(job.pk, 2)]) == 1
    job.refresh_from_db()
    assert job.heartbeat_at > old


@pytest.mark.django_db
def test_leases__are_judged_on_the_databases_clock_not_the_hosts(
    job_factory: Callable[..., Job], settings
) -> None:
    # Hole 9: a worker whose clock runs five minutes behind heartbeats a job; another host sweeps.
    settings.JOBS_LEASE_S = 60
    job = running_job(job_factory, worker="slow-clock-host:b:7:1", heartbeat_age_s=0)
    behind = timezone.now() - timedelta(minutes=5)
    with mock.patch("django.utils.timezone.now", return_value=behind):
        services.job_heartbeat(running=[(job.pk, 1)])
    assert services.jobs_recover_orphans() == 0
    job.refresh_from_db()
    assert job.status == Status.RUNNING
    assert Job.objects.filter(pk=job.pk, heartbeat_at__gte=Now() - timedelta(seconds=5)).exists()
