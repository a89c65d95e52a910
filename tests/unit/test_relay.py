"""The relay and the orphan sweep: jobs whose message is not in RabbitMQ get one, exactly when due."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionClosed

from apps.jobs import services
from apps.jobs.models import Job

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
