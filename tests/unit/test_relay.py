"""The relay and the orphan sweep: jobs whose message is not in RabbitMQ get one, exactly when due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from unittest import mock

import dramatiq
import pytest
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionClosed

from apps.jobs import services
from apps.jobs.brokers import LedgerRabbitmqBroker
from apps.jobs.models import Job, JobAttempt

Status = Job.Status
MAX_DELAY = timedelta(minutes=25)


def queued_messages(broker: StubBroker, queue: str = "default") -> int:
    return broker.queues[queue].qsize() + broker.queues[f"{queue}.DQ"].qsize()


@pytest.mark.django_db(transaction=True)
def test_job_submit__a_long_delay_is_held_in_the_ledger_not_in_rabbitmq(stub_broker: StubBroker) -> None:
    job = services.job_submit(actor="jobs.probe", delay=timedelta(hours=3))
    job.refresh_from_db()
    assert job.status == Status.PENDING
    assert job.relay_after == job.scheduled_at - MAX_DELAY
    assert queued_messages(stub_broker) == 0


@pytest.mark.django_db(transaction=True)
def test_jobs_relay_due__publishes_due_jobs_only(
    stub_broker: StubBroker, job_factory: Callable[..., Job]
) -> None:
    now = timezone.now()
    due = job_factory(status=Status.PENDING, relay_after=now - timedelta(seconds=1))
    later = job_factory(status=Status.PENDING, relay_after=now + timedelta(minutes=5))
    assert services.jobs_relay_due() == 1
    due.refresh_from_db()
    later.refresh_from_db()
    assert (due.status, due.relay_after) == (Status.QUEUED, None)
    assert (later.status, later.relay_after is not None) == (Status.PENDING, True)
    assert queued_messages(stub_broker) == 1


@pytest.mark.django_db(transaction=True)
def test_jobs_relay_due__a_failed_publish_keeps_the_job_for_another_try(
    stub_broker: StubBroker, job_factory: Callable[..., Job]
) -> None:
    job = job_factory(status=Status.PENDING, relay_after=timezone.now() - timedelta(seconds=1))
    with mock.patch.object(stub_broker, "enqueue", side_effect=ConnectionClosed(OSError("down"))):
        assert services.jobs_relay_due() == 0
    job.refresh_from_db()
    assert job.status == Status.PENDING
    assert job.relay_after > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_ledger_broker__keeps_a_delay_longer_than_the_consumer_timeout_in_the_ledger(
    stub_broker: StubBroker,
) -> None:
    # No connection is ever opened: the message is held before RabbitMQ is asked.
    broker = LedgerRabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", middleware=[])
    message = dramatiq.Message(queue_name="default", actor_name="jobs.probe", args=(), kwargs={}, options={})
    assert broker.enqueue(message, delay=int(timedelta(hours=2).total_seconds() * 1000)) is message
    job = Job.objects.get(pk=message.message_id)
    assert job.status == Status.PENDING
    assert job.relay_after == job.scheduled_at - MAX_DELAY


@pytest.mark.django_db(transaction=True)
def test_ledger_broker__a_send_while_rabbitmq_is_down_waits_in_the_ledger(stub_broker: StubBroker) -> None:
    broker = LedgerRabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", middleware=[])
    message = dramatiq.Message(queue_name="default", actor_name="jobs.probe", args=(), kwargs={}, options={})
    assert broker.enqueue(message) is message  # port 1 refuses: nothing listens there
    job = Job.objects.get(pk=message.message_id)
    assert job.status == Status.PENDING and job.relay_after is not None


def _running(job_factory: Callable[..., Job], *, host: str, heartbeat_age: timedelta, **fields) -> Job:
    now = timezone.now()
    job = job_factory(status=Status.RUNNING, attempts=1, heartbeat_at=now - heartbeat_age, **fields)
    JobAttempt.objects.create(job=job, number=1, worker_host=host, worker_pid=4242, started_at=now)
    return job


@pytest.mark.django_db
def test_jobs_recover_orphans__retries_jobs_whose_lease_expired(
    job_factory: Callable[..., Job], settings
) -> None:
    settings.JOBS_LEASE_S = 60
    orphan = _running(job_factory, host="gone", heartbeat_age=timedelta(minutes=5))
    alive = _running(job_factory, host="busy", heartbeat_age=timedelta(seconds=5))
    exhausted = _running(job_factory, host="gone", heartbeat_age=timedelta(minutes=5), max_retries=0)
    assert services.jobs_recover_orphans() == 2
    orphan.refresh_from_db()
    alive.refresh_from_db()
    exhausted.refresh_from_db()
    assert (orphan.status, orphan.relay_after is not None) == (Status.RETRYING, True)
    assert orphan.attempt_set.get().outcome == JobAttempt.Outcome.WORKER_LOST
    assert alive.status == Status.RUNNING
    assert exhausted.status == Status.FAILED and exhausted.last_error.startswith("Worker lost")


@pytest.mark.django_db
def test_job_record_dead_letter__an_undecodable_message_becomes_a_visible_failed_job() -> None:
    from apps.jobs.encoding import LedgerJSONEncoder

    with pytest.raises(dramatiq.errors.DecodeError):
        LedgerJSONEncoder().decode(b'{"not": "a message"}')
    job = Job.objects.get(actor_name="(undecodable message)")
    assert job.status == Status.FAILED
    assert "missing" in job.last_error
    assert job.args == ['{"not": "a message"}']


@pytest.mark.django_db(transaction=True)
def test_ledger_broker__a_retry_wait_past_the_consumer_timeout_is_held_for_the_relay(
    stub_broker: StubBroker, job_factory: Callable[..., Job]
) -> None:
    from dramatiq.broker import MessageProxy

    from apps.jobs import runtime
    from apps.jobs.middleware import LedgerMiddleware

    # Given attempt 1 of a job failing, and Retries asking for a 2-hour wait
    job = job_factory(status=Status.RUNNING, attempts=1)
    running = runtime.begin(job.pk, 1)
    broker = LedgerRabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1/%2F", middleware=[])
    message = dramatiq.Message(
        queue_name="default", actor_name="jobs.probe", args=(), kwargs={}, options={}, message_id=str(job.pk)
    )
    two_hours_ms = int(timedelta(hours=2).total_seconds() * 1000)
    try:
        assert broker.enqueue(message, delay=two_hours_ms) is message
        assert running.retry_held_ms == two_hours_ms
        # When the ledger records the attempt's outcome
        LedgerMiddleware()._record_outcome(MessageProxy(message), running, None, ValueError("boom"))
    finally:
        runtime.end()
    # Then the retry waits in the database, for the relay to publish when due
    job.refresh_from_db()
    assert job.status == Status.RETRYING
    assert job.relay_after == job.next_retry_at
    assert job.next_retry_at - timezone.now() > timedelta(hours=1, minutes=59)
