"""The ledger middleware: an actor runs only once its attempt is recorded, and every outcome is recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from django.db import connection, connections
from django.utils import timezone
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import SkipMessage

from apps.jobs import runtime, services
from apps.jobs.middleware import LedgerMiddleware
from apps.jobs.models import Job
from apps.workloads.models import ProbeRun
from tests.unit.conftest import attempt_outcomes, message_of, run_job, running_job

Status = Job.Status


@dramatiq.actor(actor_name="tests.returns_nul", queue_name="default", max_retries=0)
def returns_nul() -> str:
    return "a\x00b"


@dramatiq.actor(actor_name="tests.raises_nul", queue_name="default", max_retries=0)
def raises_nul() -> None:
    raise ValueError("bad\x00byte")


@pytest.mark.django_db(transaction=True)
def test_retry__is_published_only_once_the_ledger_recorded_it(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hole 2: with no backoff and a ledger write slower than it, the retry copy reached the other
    # worker thread while the job was still "running", was dropped as a duplicate, and the job
    # stayed retrying for ever.
    record_retry = services.job_retry_scheduled

    def slow_record(**kwargs: Any) -> Any:
        time.sleep(0.5)  # a lock wait, a database hiccup
        return record_retry(**kwargs)

    monkeypatch.setattr(services, "job_retry_scheduled", slow_record)
    job = services.job_submit(
        actor="jobs.probe", kwargs={"fail_attempts": 1}, options={"min_backoff": 0, "max_backoff": 0}
    )
    job = run_job(stub_broker, stub_worker, job)
    assert job.status == Status.SUCCEEDED, job.last_error
    assert attempt_outcomes(job) == ["retried", "succeeded"]


@pytest.mark.django_db(transaction=True)
def test_result__that_the_database_refuses_fails_the_job_clearly(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    # Hole 4: a result PostgreSQL refuses (NUL) left the job running with its message dead-lettered.
    job = services.job_submit(actor="tests.returns_nul")
    job = run_job(stub_broker, stub_worker, job)
    assert job.status == Status.FAILED
    assert "ResultNotStorable" in job.last_error
    assert attempt_outcomes(job) == ["failed"]


@pytest.mark.django_db(transaction=True)
def test_error__with_a_nul_character_is_recorded(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    job = services.job_submit(actor="tests.raises_nul")
    job = run_job(stub_broker, stub_worker, job)
    assert job.status == Status.FAILED
    assert job.last_error.startswith("ValueError: bad")


def _publish_unrecorded(broker: StubBroker, message: dramatiq.Message) -> None:
    """Publish as a foreign producer would: no ledger row, no check in the sender."""
    with runtime.ledger_publish(message.message_id):
        broker.enqueue(message)


@pytest.mark.django_db(transaction=True)
def test_delivery__whose_arguments_the_database_refuses_is_dead_lettered_not_postponed(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    # Hole 4: it was taken for a database outage and re-posted every 60 s for ever.
    message = dramatiq.Message(
        queue_name="default", actor_name="jobs.probe", args=(), kwargs={"sleep_ms": "a\x00b"}, options={}
    )
    _publish_unrecorded(stub_broker, message)
    stub_broker.join("default", fail_fast=False)
    stub_worker.join()
    job = Job.objects.get(pk=message.message_id)
    assert job.status == Status.FAILED
    assert "DataError" in job.last_error or "NUL" in job.last_error
    assert stub_broker.queues["default.DQ"].qsize() == 0  # nothing postponed
    assert len(stub_broker.dead_letters) == 1
    assert ProbeRun.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_delivery__that_the_ledger_cannot_start_never_runs_its_actor(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    # Hole 5: an unexpected error in the before-hook (here: a message id that is no UUID) was
    # logged by Dramatiq, and the actor ran with no row.
    message = dramatiq.Message(
        queue_name="default", actor_name="jobs.probe", args=(), kwargs={}, options={}, message_id="not-a-uuid"
    )
    _publish_unrecorded(stub_broker, message)
    stub_broker.join("default", fail_fast=False)
    stub_worker.join()
    assert ProbeRun.objects.count() == 0
    assert len(stub_broker.dead_letters) == 1
    recorded = Job.objects.get(actor_name="jobs.probe")
    assert recorded.status == Status.FAILED and "not-a-uuid" in recorded.last_error


@pytest.mark.django_db(transaction=True)
def test_tick__a_retry_after_the_skip_delay_runs_and_is_not_skipped(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, settings, job_factory: Callable[..., Job]
) -> None:
    # Hole 6: periodiq's skip rule applied to retries and turned a failing tick into "skipped".
    settings.SCHEDULE_SKIP_DELAY_S = 300
    scheduled_at = (timezone.now() - timedelta(minutes=30)).isoformat()
    job = job_factory(
        actor_name="jobs.prune_finished_jobs",
        options={"scheduled_at": scheduled_at},
        status=Status.RETRYING,
        attempts=1,
        next_retry_at=timezone.now(),
        relay_after=timezone.now(),
    )
    services.jobs_relay_due()
    job = run_job(stub_broker, stub_worker, job)
    assert (job.status, job.attempts) == (Status.SUCCEEDED, 2)


@pytest.mark.django_db(transaction=True)
def test_max_age__a_late_copy_of_a_running_job_does_not_fail_it(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, job_factory: Callable[..., Job]
) -> None:
    # Hole 7: AgeLimit dead-letters the stale copy; the live worker's attempt must still succeed.
    job = running_job(job_factory, worker="other-host:b00t:1:1", heartbeat_age_s=0, options={"max_age": 1000})
    copy = services.job_message(job).copy(message_timestamp=int(time.time() * 1000) - 60_000)
    _publish_unrecorded(stub_broker, copy)
    stub_broker.join("default", fail_fast=False)
    stub_worker.join()
    job.refresh_from_db()
    assert job.status == Status.RUNNING
    assert services.job_succeed(job_id=job.pk, attempt=1, result="done") is not None


@pytest.mark.django_db(transaction=True)
def test_after_nack__records_a_dead_letter_on_a_consumer_thread_whose_connection_was_lost(
    stub_broker: StubBroker,
) -> None:
    # Hole 10: consumer threads never reconnected after a PostgreSQL restart.
    middleware = LedgerMiddleware()
    message = MessageProxy(
        dramatiq.Message(
            queue_name="default", actor_name="tests.unknown_actor", args=(), kwargs={}, options={}
        )
    )
    backend: list[int] = []
    terminated = threading.Event()

    def consumer_thread() -> None:
        try:
            connection.ensure_connection()
            backend.append(connection.connection.info.backend_pid)
            terminated.wait(10)
            middleware.after_nack(stub_broker, message)
        finally:
            connections.close_all()

    thread = threading.Thread(target=consumer_thread)
    thread.start()
    while not backend and thread.is_alive():
        time.sleep(0.01)
    with connection.cursor() as cursor:  # what a PostgreSQL restart does to the thread's connection
        cursor.execute("SELECT pg_terminate_backend(%s)", [backend[0]])
    terminated.set()
    thread.join(10)
    job = Job.objects.get(pk=message.message_id)
    assert job.status == Status.FAILED and "tests.unknown_actor" in job.last_error


@pytest.mark.django_db(transaction=True)
def test_stopping_worker__hands_a_message_back_instead_of_starting_it(
    stub_broker: StubBroker, job_factory: Callable[..., Job]
) -> None:
    # Hole 1: threads of a stopping worker kept taking messages, only to abandon them.
    middleware = LedgerMiddleware()
    middleware.before_worker_shutdown(stub_broker, None)
    job = job_factory(status=Status.QUEUED)
    message = message_of(job)
    try:
        with pytest.raises(SkipMessage):
            middleware.before_process_message(stub_broker, message)
        middleware.after_skip_message(stub_broker, message)
    finally:
        runtime.delivery_close()
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Status.QUEUED, 0)
    assert stub_broker.queues["default"].qsize() == 1  # a copy for another worker
    assert not message.failed
