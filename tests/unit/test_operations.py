"""Operators' actions on jobs, shared by the admin and the API: retry and cancel."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import dramatiq
import pytest
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from apps.jobs import services
from apps.jobs.exceptions import InvalidTransition, JobNotFound
from apps.jobs.models import Job
from apps.workloads.models import ProbeRun
from tests.unit.conftest import run_job

Status = Job.Status


@pytest.mark.django_db(transaction=True)
def test_job_retry__runs_a_failed_job_again_as_a_new_job_linked_to_it(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, admin_user
) -> None:
    # Given a job that failed for good
    failed = run_job(
        stub_broker, stub_worker, services.job_submit(actor="jobs.probe", kwargs={"permanent": True})
    )
    assert failed.status == Status.FAILED
    # When an operator retries it
    retry = services.job_retry(job_id=failed.pk, requested_by=admin_user)
    # Then a new job runs with the same actor, queue and arguments, linked to the first
    assert retry.pk != failed.pk
    assert (retry.actor_name, retry.queue_name, retry.kwargs) == (
        failed.actor_name,
        failed.queue_name,
        failed.kwargs,
    )
    assert (retry.retry_of_id, retry.requested_by, retry.source) == (failed.pk, admin_user, Job.Source.ADMIN)
    retry = run_job(stub_broker, stub_worker, retry)
    assert retry.status == Status.FAILED and retry.attempts == 1
    # And the first job's history is untouched
    failed_again = Job.objects.get(pk=failed.pk)
    assert (failed_again.status, failed_again.attempts, failed_again.last_error) == (
        Status.FAILED,
        1,
        failed.last_error,
    )


@pytest.mark.django_db(transaction=True)
def test_job_retry__a_cancelled_job_runs(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, job_factory: Callable[..., Job]
) -> None:
    job = job_factory(status=Status.PENDING)
    services.job_cancel(job_id=job.pk)
    retry = run_job(stub_broker, stub_worker, services.job_retry(job_id=job.pk))
    assert retry.status == Status.SUCCEEDED
    assert ProbeRun.objects.filter(job_id=retry.pk).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "status", [Status.PENDING, Status.QUEUED, Status.RUNNING, Status.RETRYING, Status.SUCCEEDED]
)
def test_job_retry__refuses_a_job_that_did_not_end_in_failure(
    job_factory: Callable[..., Job], status: str
) -> None:
    job = job_factory(status=status)
    with pytest.raises(InvalidTransition, match="only failed or cancelled"):
        services.job_retry(job_id=job.pk)
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_job_retry__twice_while_the_first_retry_waits_is_refused(job_factory: Callable[..., Job]) -> None:
    job = job_factory(status=Status.FAILED)
    first = services.job_retry(job_id=job.pk)
    with pytest.raises(InvalidTransition, match=str(first.pk)):
        services.job_retry(job_id=job.pk)
    # Once that retry failed too, the job may be retried again.
    Job.objects.filter(pk=first.pk).update(status=Status.FAILED)
    assert services.job_retry(job_id=job.pk).retry_of_id == job.pk


@pytest.mark.django_db
def test_job_retry__of_a_schedule_tick_is_not_skipped_as_late(job_factory: Callable[..., Job]) -> None:
    late = (timezone.now() - timedelta(hours=3)).isoformat()
    tick = job_factory(
        actor_name="jobs.prune_finished_jobs",
        status=Status.FAILED,
        options={"scheduled_at": late, "max_retries": 2, "time_limit": None},
    )
    retry = services.job_retry(job_id=tick.pk)
    assert retry.options == {"max_retries": 2}
    assert services.job_start(job_id=retry.pk) is not None


@pytest.mark.django_db
@pytest.mark.parametrize("job_id", ["00000000-0000-0000-0000-000000000000", "not-a-job-id"])
def test_job_retry_and_cancel__an_unknown_id_is_not_found(job_id: str) -> None:
    with pytest.raises(JobNotFound):
        services.job_retry(job_id=job_id)
    with pytest.raises(JobNotFound):
        services.job_cancel(job_id=job_id)


@pytest.mark.django_db(transaction=True)
def test_job_cancel__a_job_whose_message_is_already_in_rabbitmq_never_runs(
    stub_broker: StubBroker, job_factory: Callable[..., Job]
) -> None:
    from tests.unit.conftest import start_worker

    # Given a queued job whose message waits in the queue
    job = services.job_submit(actor="jobs.probe")
    assert stub_broker.queues["default"].qsize() == 1
    # When it is cancelled, then a worker receives its message
    services.job_cancel(job_id=job.pk)
    worker = start_worker(stub_broker)
    try:
        job = run_job(stub_broker, worker, job)
    finally:
        worker.stop()
    # Then it stays cancelled and never ran
    assert (job.status, job.attempts) == (Status.CANCELLED, 0)
    assert ProbeRun.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Status.RUNNING, Status.SUCCEEDED, Status.FAILED])
def test_job_cancel__refuses_a_job_that_runs_or_ended(job_factory: Callable[..., Job], status: str) -> None:
    job = job_factory(status=status)
    with pytest.raises(InvalidTransition):
        services.job_cancel(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == status
