"""services.job_submit: validation, the row in the caller's transaction, the publish after commit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import dramatiq
import pytest
from django.db import transaction
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from apps.jobs import services
from apps.jobs.exceptions import InvalidJobArguments, InvalidJobOptions, UnknownActor, UnknownQueue
from apps.jobs.models import Job, JobEvent


def _messages(broker: StubBroker, queue_name: str) -> list[dramatiq.Message]:
    """The messages waiting on a stub queue, read without consuming them."""
    return [dramatiq.Message.decode(data) for data in list(broker.queues[queue_name].queue)]


def _message_count(broker: StubBroker) -> int:
    return sum(queue.qsize() for queue in broker.queues.values())


# --- requests that are refused write nothing ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_job_submit__unknown_actor_raises_and_writes_nothing(stub_broker: StubBroker) -> None:
    # Given an empty ledger
    before = Job.objects.count()

    # When a job is submitted for an actor nobody declared
    with pytest.raises(UnknownActor) as raised:
        services.job_submit(actor="jobs.does_not_exist")

    # Then the error names the actor, and no row or message was written
    assert raised.value.extra["actor"] == "jobs.does_not_exist"
    assert Job.objects.count() == before
    assert JobEvent.objects.count() == 0
    assert _message_count(stub_broker) == 0


@pytest.mark.parametrize(
    "bad_value",
    [
        pytest.param(dt.datetime(2024, 1, 1, tzinfo=dt.UTC), id="datetime"),
        pytest.param(b"raw bytes", id="bytes"),
        pytest.param({1, 2, 3}, id="set"),
        pytest.param(float("nan"), id="nan"),
    ],
)
@pytest.mark.django_db(transaction=True)
def test_job_submit__non_json_arguments_raise_and_write_nothing(
    stub_broker: StubBroker, bad_value: Any
) -> None:
    # When a value JSON cannot carry is passed, positionally or by keyword
    with pytest.raises(InvalidJobArguments):
        services.job_submit(actor="jobs.probe", args=[bad_value])
    with pytest.raises(InvalidJobArguments):
        services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": bad_value})

    # Then nothing was written or published
    assert Job.objects.count() == 0
    assert _message_count(stub_broker) == 0


@pytest.mark.django_db
def test_job_submit__unknown_queue_raises(stub_broker: StubBroker) -> None:
    with pytest.raises(UnknownQueue) as raised:
        services.job_submit(actor="jobs.probe", queue="no-such-queue")

    assert raised.value.extra["queue"] == "no-such-queue"
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"priority": -1}, id="priority-negative"),
        pytest.param({"priority": 11}, id="priority-above-max"),
        pytest.param({"priority": True}, id="priority-bool"),
        pytest.param({"priority": "5"}, id="priority-string"),
        pytest.param({"delay": -1}, id="delay-negative"),
        pytest.param({"delay": dt.timedelta(seconds=-5)}, id="delay-negative-timedelta"),
        pytest.param({"delay": 1.5}, id="delay-float"),
        pytest.param({"options": {"bogus": 1}}, id="option-unknown"),
        pytest.param({"options": {"max_retries": -1}}, id="option-negative"),
        pytest.param({"options": {"time_limit": "soon"}}, id="option-not-a-number"),
        pytest.param({"source": "carrier-pigeon"}, id="source-unknown"),
    ],
)
@pytest.mark.django_db
def test_job_submit__invalid_options_raise(stub_broker: StubBroker, request_kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidJobOptions):
        services.job_submit(actor="jobs.probe", **request_kwargs)

    assert Job.objects.count() == 0


# --- the row is the caller's; the message follows the commit ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_job_submit__rolled_back_transaction_leaves_no_row_and_publishes_nothing(
    stub_broker: StubBroker,
) -> None:
    # Given a submit inside a transaction
    # When that transaction is rolled back
    with pytest.raises(RuntimeError, match="caller fails"):
        with transaction.atomic():
            job = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 1})
            assert Job.objects.filter(pk=job.pk).exists()  # visible inside the transaction
            raise RuntimeError("the caller fails after submitting")

    # Then neither the row nor the message exists
    assert Job.objects.count() == 0
    assert JobEvent.objects.count() == 0
    assert stub_broker.queues["default"].qsize() == 0
    assert _message_count(stub_broker) == 0


@pytest.mark.django_db(transaction=True)
def test_job_submit__not_published_before_commit(stub_broker: StubBroker) -> None:
    # Given a submit inside a transaction that is still open
    with transaction.atomic():
        job = services.job_submit(actor="jobs.probe")

        # Then nothing is published yet, and the job is pending
        assert stub_broker.queues["default"].qsize() == 0
        assert Job.objects.get(pk=job.pk).status == Job.Status.PENDING

    # When it commits, the message goes out
    assert stub_broker.queues["default"].qsize() == 1


@pytest.mark.django_db(transaction=True)
def test_job_submit__committed_publishes_one_message_with_the_job_id(stub_broker: StubBroker) -> None:
    # When a job is submitted and its transaction commits
    with transaction.atomic():
        job = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 5}, priority=3)

    # Then exactly one message carries the job's id, arguments and priority
    messages = _messages(stub_broker, "default")
    assert len(messages) == 1
    assert _message_count(stub_broker) == 1
    message = messages[0]
    assert message.message_id == str(job.id)
    assert message.actor_name == "jobs.probe"
    assert message.kwargs == {"sleep_ms": 5}
    assert message.options["broker_priority"] == 3

    # And the ledger marks the job queued, with the time of the publish and one event per step
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert job.enqueued_at is not None
    assert job.enqueued_at >= job.created_at
    assert list(job.events.values_list("from_status", "to_status")) == [
        ("", Job.Status.PENDING),
        (Job.Status.PENDING, Job.Status.QUEUED),
    ]


@pytest.mark.django_db
def test_job_submit__commit_callback_publishes(
    stub_broker: StubBroker, django_capture_on_commit_callbacks: Any
) -> None:
    # When the submit's on_commit callbacks run
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = services.job_submit(actor="jobs.probe")

    # Then one callback published one message for the job
    assert len(callbacks) == 1
    assert [m.message_id for m in _messages(stub_broker, "default")] == [str(job.pk)]
    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED


@pytest.mark.django_db
def test_job_submit__records_actor_defaults_and_overrides(stub_broker: StubBroker) -> None:
    default = services.job_submit(actor="jobs.probe")
    overridden = services.job_submit(actor="jobs.probe", options={"max_retries": 1, "time_limit": 2000})

    assert default.queue_name == "default"
    assert default.max_retries == 5  # jobs.probe declares max_retries=5
    assert default.source == Job.Source.CODE
    assert overridden.max_retries == 1
    assert overridden.options == {"max_retries": 1, "time_limit": 2000}


# --- duplicates -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_job_submit__idempotency_key_returns_the_first_job(stub_broker: StubBroker) -> None:
    # Given a job submitted with a key
    first = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 1}, idempotency_key="order-42")

    # When the same key is submitted again, even with other arguments
    second = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 2}, idempotency_key="order-42")

    # Then the first job is the answer and there is still one row
    assert second.pk == first.pk
    assert Job.objects.count() == 1
    assert Job.objects.get().kwargs == {"sleep_ms": 1}


@pytest.mark.django_db
def test_job_submit__unique_actor_returns_the_active_job_then_a_new_one_once_final(
    stub_broker: StubBroker,
) -> None:
    # Given an active job of an actor declared unique=True
    first = services.job_submit(actor="jobs.generate_report", args=[987654])
    assert first.unique_key

    # When the same arguments are submitted while it is active
    again = services.job_submit(actor="jobs.generate_report", args=[987654])
    # Then the active job is returned; other arguments still get their own job
    other = services.job_submit(actor="jobs.generate_report", args=[123])
    assert again.pk == first.pk
    assert other.pk != first.pk
    assert Job.objects.filter(actor_name="jobs.generate_report").count() == 2

    # When the first job is final
    services.job_cancel(job_id=first.pk)
    after = services.job_submit(actor="jobs.generate_report", args=[987654])

    # Then the same arguments make a new job
    assert after.pk != first.pk
    assert after.unique_key == first.unique_key
    assert Job.objects.filter(actor_name="jobs.generate_report").count() == 3


@pytest.mark.django_db
def test_job_submit__actor_not_declared_unique_gets_no_unique_key(stub_broker: StubBroker) -> None:
    first = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 1})
    second = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 1})

    assert first.unique_key is None
    assert second.pk != first.pk


# --- delay and argument normalisation ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_job_submit__delay_sets_scheduled_at_and_uses_the_delay_queue(stub_broker: StubBroker) -> None:
    # When a job is submitted with a delay
    before = timezone.now()
    job = services.job_submit(actor="jobs.probe", delay=dt.timedelta(minutes=5))

    # Then its row says when it may run
    job.refresh_from_db()
    assert job.scheduled_at is not None
    assert before + dt.timedelta(minutes=5) <= job.scheduled_at <= timezone.now() + dt.timedelta(minutes=5)

    # And its message waits on the delay queue, not on the work queue
    assert stub_broker.queues["default"].qsize() == 0
    delayed = _messages(stub_broker, "default.DQ")
    assert [m.message_id for m in delayed] == [str(job.pk)]
    eta_ms = delayed[0].options["eta"]
    assert eta_ms >= int((before + dt.timedelta(minutes=4, seconds=59)).timestamp() * 1000)
    assert job.status == Job.Status.QUEUED


@pytest.mark.django_db
def test_job_submit__without_delay_has_no_scheduled_at(stub_broker: StubBroker) -> None:
    job = services.job_submit(actor="jobs.probe", delay=0)

    assert job.scheduled_at is None


@pytest.mark.django_db
def test_job_submit__tuples_become_lists(stub_broker: StubBroker) -> None:
    # When arguments contain tuples
    job = services.job_submit(
        actor="jobs.process_batch", args=(("a@example.com", "b@example.com"),), kwargs={"pair": (1, 2)}
    )

    # Then they are stored (and would arrive) as lists
    job.refresh_from_db()
    assert job.args == [["a@example.com", "b@example.com"]]
    assert job.kwargs == {"pair": [1, 2]}
    assert services.job_message(job).args == (["a@example.com", "b@example.com"],)
