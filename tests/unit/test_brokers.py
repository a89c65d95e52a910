"""The broker: a running delivery's retry goes through the ledger; what RabbitMQ must not hold waits in it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import dramatiq
import pytest
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from apps.jobs.brokers import LedgerRabbitmqBroker
from apps.jobs.exceptions import InvalidJobArguments, MessageTooLarge
from apps.jobs.models import Job
from apps.workloads.actors import probe

Status = Job.Status
MAX_DELAY = timedelta(minutes=25)


def queued_messages(broker: StubBroker, queue: str = "default") -> int:
    return broker.queues[queue].qsize() + broker.queues[f"{queue}.DQ"].qsize()


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


@pytest.mark.django_db(transaction=True)
def test_ledger_broker__a_retry_wait_past_the_consumer_timeout_is_held_for_the_relay(
    stub_broker: StubBroker, job_factory: Callable[..., Job]
) -> None:
    from dramatiq.broker import MessageProxy

    from apps.jobs import runtime
    from apps.jobs.middleware import LedgerMiddleware

    # Given attempt 1 of a job failing in this thread, and Retries asking for a 2-hour wait
    job = job_factory(status=Status.QUEUED)
    message = MessageProxy(
        dramatiq.Message(
            queue_name="default",
            actor_name="jobs.probe",
            args=(),
            kwargs={},
            options={},
            message_id=str(job.pk),
        )
    )
    middleware = LedgerMiddleware()
    middleware.before_process_message(stub_broker, message)
    two_hours_ms = int(timedelta(hours=2).total_seconds() * 1000)
    assert stub_broker.enqueue(message, delay=two_hours_ms) is message
    assert runtime.current().retry_delay_ms == two_hours_ms
    # When the ledger records the attempt's outcome
    middleware.after_process_message(stub_broker, message, exception=ValueError("boom"))
    # Then the retry waits in the database, for the relay to publish when due, and nothing is queued
    job.refresh_from_db()
    assert job.status == Status.RETRYING
    assert job.relay_after == job.next_retry_at - MAX_DELAY
    assert job.next_retry_at - timezone.now() > timedelta(hours=1, minutes=59)
    assert queued_messages(stub_broker) == 0


@pytest.mark.django_db(transaction=True)
def test_ledger_broker__a_send_with_a_nul_character_is_refused_in_the_sender(stub_broker: StubBroker) -> None:
    # Hole 4: the message was published, could never be recorded, and was postponed every minute.
    with pytest.raises(InvalidJobArguments, match="NUL"):
        probe.send("a\x00b")
    assert queued_messages(stub_broker) == 0
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_ledger_broker__a_message_larger_than_rabbitmq_takes_is_refused_in_the_sender(
    stub_broker: StubBroker, settings
) -> None:
    # Hole 11: it stayed pending for ever while every relay re-published it.
    settings.JOBS_MAX_MESSAGE_BYTES = 10_000
    with pytest.raises(MessageTooLarge):
        dramatiq.get_broker().enqueue(probe.message("x" * 20_000))
    assert queued_messages(stub_broker) == 0
    assert Job.objects.count() == 0
