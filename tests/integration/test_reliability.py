"""Shutdown and long waits with a live worker: nothing lost, nothing done twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import Job, JobAttempt
from apps.workloads.models import ProbeRun
from tests.live import WorkerProcess, wait_for, wait_job

Status = Job.Status


@pytest.fixture
def own_worker(request: pytest.FixtureRequest, worker: WorkerProcess) -> Iterator[Any]:
    """Stops the shared worker, so the test's own workers are the only consumers."""
    worker.stop()
    started: list[WorkerProcess] = []

    def start(name: str, **options: Any) -> WorkerProcess:
        process = WorkerProcess(f"{request.node.name}-{name}", tier="integration", **options)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_sigterm__lets_a_running_job_finish(own_worker: Any) -> None:
    worker = own_worker("graceful", shutdown_timeout_ms=20_000)
    job = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 2500})
    wait_job(job.pk, Status.RUNNING)
    worker.terminate()
    assert worker.process.wait(timeout=30) == 0
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED
    assert job.attempt_set.get().outcome == JobAttempt.Outcome.SUCCEEDED


def test_sigterm__a_job_abandoned_at_the_shutdown_timeout_is_recorded_and_requeued(own_worker: Any) -> None:
    hasty = own_worker("hasty", shutdown_timeout_ms=1000)
    job = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 6000})
    wait_job(job.pk, Status.RUNNING)
    hasty.terminate()
    hasty.process.wait(timeout=30)
    job = wait_job(job.pk, Status.RETRYING, timeout=5)
    assert job.attempt_set.get().outcome == JobAttempt.Outcome.INTERRUPTED
    # The message went back to RabbitMQ: the next worker runs the job to the end.
    own_worker("next")
    job = wait_job(job.pk, timeout=30)
    assert (job.status, job.attempts) == (Status.SUCCEEDED, 2)
    assert ProbeRun.objects.filter(job_id=job.pk).count() == 1


def test_long_delay__waits_in_the_database_and_is_published_when_due(worker: WorkerProcess) -> None:
    # A delay past RabbitMQ's consumer_timeout is not handed to RabbitMQ at all.
    job = services.job_submit(actor="jobs.probe", delay=timedelta(hours=6))
    time.sleep(2)  # several relay rounds
    job.refresh_from_db()
    assert job.status == Status.PENDING and job.enqueued_at is None
    assert job.relay_after == job.scheduled_at - timedelta(minutes=25)
    # When its time comes (here: moved to now), the relay publishes it and it runs.
    Job.objects.filter(pk=job.pk).update(scheduled_at=timezone.now(), relay_after=timezone.now())
    job = wait_job(job.pk, timeout=30)
    assert job.status == Status.SUCCEEDED


def test_orphan__a_running_job_whose_worker_vanished_is_retried(worker: WorkerProcess) -> None:
    # A job left running by a worker on another host that stopped heartbeating (its message is gone).
    stale = timezone.now() - timedelta(minutes=10)
    job = Job.objects.create(
        actor_name="jobs.probe",
        queue_name="default",
        status=Status.RUNNING,
        attempts=1,
        max_retries=3,
        heartbeat_at=stale,
        started_at=stale,
    )
    JobAttempt.objects.create(
        job=job, number=1, worker_host="vanished-host", worker_pid=4242, started_at=stale
    )
    job = wait_for(
        lambda: Job.objects.filter(pk=job.pk, status=Status.SUCCEEDED).first(),
        timeout=40,
        message="orphan not recovered",
    )
    outcomes = list(job.attempt_set.order_by("number").values_list("outcome", flat=True))
    assert outcomes == [JobAttempt.Outcome.WORKER_LOST, JobAttempt.Outcome.SUCCEEDED]
