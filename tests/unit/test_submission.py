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
from apps.jobs.exceptions import (
    InvalidJobArguments,
    InvalidJobOptions,
    MessageTooLarge,
    UnknownActor,
    UnknownQueue,
)
from apps.jobs.models import Job, JobEvent
from apps.jobs.services import validation


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


# --- bounds: what PostgreSQL, RabbitMQ or the clock cannot take is refused before anything is written -------


def _assert_refused(
    stub_broker: StubBroker, error: type[Exception], field: str, **request: Any
) -> InvalidJobArguments | InvalidJobOptions:
    """Submit `request` for jobs.probe; assert `error` naming `field`, and that nothing was written."""
    jobs_before = Job.objects.count()
    events_before = JobEvent.objects.count()
    with pytest.raises(error) as raised:
        services.job_submit(actor=request.pop("actor", "jobs.probe"), **request)
    assert field in str(raised.value)
    assert raised.value.extra["field"] == field
    assert Job.objects.count() == jobs_before
    assert JobEvent.objects.count() == events_before
    assert _message_count(stub_broker) == 0
    return raised.value


@pytest.mark.parametrize(
    "delay",
    [
        pytest.param(10**30, id="huge-int"),
        pytest.param(dt.timedelta.max, id="timedelta-max"),
        pytest.param(60_001, id="one-ms-over"),
        pytest.param(dt.timedelta(minutes=1, milliseconds=1), id="timedelta-one-ms-over"),
    ],
)
@pytest.mark.django_db
def test_job_submit__delay_past_the_maximum_is_refused(
    stub_broker: StubBroker, settings: Any, delay: int | dt.timedelta
) -> None:
    # Given a maximum delay of one minute
    settings.JOBS_MAX_DELAY_MS = 60_000

    # When a longer delay is asked for, Then it is refused naming the limit, and nothing is written
    error = _assert_refused(stub_broker, InvalidJobOptions, "delay", delay=delay)
    assert "JOBS_MAX_DELAY_MS" in str(error)
    assert "60000" in str(error)


@pytest.mark.django_db
def test_job_submit__delay_at_the_maximum_is_accepted(stub_broker: StubBroker, settings: Any) -> None:
    settings.JOBS_MAX_DELAY_MS = 60_000

    job = services.job_submit(actor="jobs.probe", delay=dt.timedelta(minutes=1))

    assert job.scheduled_at is not None


@pytest.mark.parametrize(
    ("options", "field", "limit"),
    [
        pytest.param({"max_retries": 10**12}, "max_retries", "100", id="max_retries-huge"),
        pytest.param({"max_retries": 101}, "max_retries", "100", id="max_retries-one-over"),
        pytest.param({"min_backoff": 10**30}, "min_backoff", "RETRY_MAX_BACKOFF_MS", id="min_backoff-huge"),
        pytest.param({"max_backoff": 10**30}, "max_backoff", "RETRY_MAX_BACKOFF_MS", id="max_backoff-huge"),
        pytest.param(
            {"max_backoff": 25 * 60_000 + 1}, "max_backoff", "RETRY_MAX_BACKOFF_MS", id="max_backoff-one-over"
        ),
        pytest.param({"max_age": 10**30}, "max_age", "JOBS_MAX_DELAY_MS", id="max_age-huge"),
    ],
)
@pytest.mark.django_db
def test_job_submit__retry_options_past_their_maximum_are_refused(
    stub_broker: StubBroker, settings: Any, options: dict[str, Any], field: str, limit: str
) -> None:
    settings.RETRY_MAX_BACKOFF_MS = 25 * 60_000

    error = _assert_refused(stub_broker, InvalidJobOptions, field, options=options)

    assert limit in str(error)


@pytest.mark.django_db
def test_job_submit__retry_options_at_their_maximum_are_accepted(
    stub_broker: StubBroker, settings: Any
) -> None:
    settings.RETRY_MAX_BACKOFF_MS = 25 * 60_000
    options = {"max_retries": 100, "min_backoff": 25 * 60_000, "max_backoff": 25 * 60_000}

    job = services.job_submit(actor="jobs.probe", options=options)

    assert job.max_retries == 100
    assert job.options == options


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"time_limit": 29 * 60_000 + 1}, "time_limit", id="time_limit-one-over"),
        pytest.param({"time_limit": 10**30}, "time_limit", id="time_limit-huge"),
        pytest.param({"time_limit": 0}, "time_limit", id="time_limit-zero"),
        pytest.param({"soft_time_limit": 29 * 60_000 + 1}, "soft_time_limit", id="soft-one-over"),
        pytest.param({"soft_time_limit": 0}, "soft_time_limit", id="soft-zero"),
    ],
)
@pytest.mark.django_db
def test_job_submit__time_limits_past_the_consumer_timeout_are_refused(
    stub_broker: StubBroker, settings: Any, options: dict[str, Any], field: str
) -> None:
    # Given a maximum time limit under RabbitMQ's consumer_timeout
    settings.JOBS_MAX_TIME_LIMIT_MS = 29 * 60_000

    # When a job asks for more (or for no time at all), Then it is refused, naming the limit
    error = _assert_refused(stub_broker, InvalidJobOptions, field, options=options)
    if options.get(field, 0) > 29 * 60_000:
        assert "JOBS_MAX_TIME_LIMIT_MS" in str(error)


@pytest.mark.django_db
def test_job_submit__soft_time_limit_past_the_hard_one_is_accepted(stub_broker: StubBroker) -> None:
    # A soft limit at or past the hard one never fires: that is how a job turns its soft limit off
    # (tests/unit/workloads/test_actors.py::test_probe__hard_time_limit_stops_it relies on it)
    options = {"time_limit": 1500, "soft_time_limit": 60_000}

    job = services.job_submit(actor="jobs.probe", options=options)

    assert job.options == options


@pytest.mark.django_db
def test_job_submit__time_limits_at_the_maximum_are_accepted(stub_broker: StubBroker, settings: Any) -> None:
    settings.JOBS_MAX_TIME_LIMIT_MS = 29 * 60_000
    options = {"time_limit": 29 * 60_000, "soft_time_limit": 29 * 60_000 - 1}

    job = services.job_submit(actor="jobs.probe", options=options)

    assert job.options == options


@pytest.mark.parametrize(
    "field",
    [
        "max_retries",
        "min_backoff",
        "max_backoff",
        "time_limit",
        "soft_time_limit",
        "max_age",
        "notify_shutdown",
        "on_success",
        "on_failure",
    ],
)
@pytest.mark.django_db
def test_job_submit__none_option_values_are_refused(stub_broker: StubBroker, field: str) -> None:
    error = _assert_refused(stub_broker, InvalidJobOptions, field, options={field: None})

    assert "None" in str(error)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"notify_shutdown": "yes"}, "notify_shutdown", id="notify_shutdown-string"),
        pytest.param({"on_success": 5}, "on_success", id="on_success-number"),
        pytest.param({"on_failure": "jobs.does_not_exist"}, "on_failure", id="on_failure-unknown-actor"),
    ],
)
@pytest.mark.django_db
def test_job_submit__non_number_options_of_the_wrong_kind_are_refused(
    stub_broker: StubBroker, options: dict[str, Any], field: str
) -> None:
    _assert_refused(stub_broker, InvalidJobOptions, field, options=options)


@pytest.mark.django_db
def test_job_submit__callback_and_shutdown_options_are_accepted(stub_broker: StubBroker) -> None:
    options = {"on_success": "jobs.probe", "on_failure": "jobs.probe", "notify_shutdown": True}

    job = services.job_submit(actor="jobs.probe", options=options)

    assert job.options == options


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        pytest.param({"args": ["a\x00b"]}, "args", id="args-value"),
        pytest.param({"args": [[1, {"deep": ["ok", "\x00"]}]]}, "args", id="args-nested"),
        pytest.param({"kwargs": {"sleep_ms": "\x00"}}, "kwargs", id="kwargs-value"),
        pytest.param({"kwargs": {"na\x00me": 1}}, "kwargs", id="kwargs-key"),
        pytest.param({"kwargs": {"outer": {"in\x00ner": [1]}}}, "kwargs", id="kwargs-nested-key"),
    ],
)
@pytest.mark.django_db
def test_job_submit__nul_characters_in_arguments_are_refused(
    stub_broker: StubBroker, request_kwargs: dict[str, Any], field: str
) -> None:
    # PostgreSQL's jsonb cannot store \u0000: the row would fail to insert (DataError)
    error = _assert_refused(stub_broker, InvalidJobArguments, field, **request_kwargs)

    assert "NUL" in str(error)


@pytest.mark.django_db
def test_job_submit__nul_character_in_idempotency_key_is_refused(stub_broker: StubBroker) -> None:
    error = _assert_refused(stub_broker, InvalidJobOptions, "idempotency_key", idempotency_key="order-\x00")

    assert "NUL" in str(error)


@pytest.mark.django_db
def test_job_submit__escaped_backslash_u0000_text_is_not_a_nul(stub_broker: StubBroker) -> None:
    # Given text that only looks like the JSON escape of NUL: a backslash, then "u0000"
    text = "C:\\u0000\\\\u0000"

    job = services.job_submit(actor="jobs.probe", args=[text], kwargs={"note": text})

    job.refresh_from_db()
    assert job.args == [text]
    assert job.kwargs == {"note": text}


@pytest.mark.django_db
def test_job_submit__message_larger_than_the_broker_takes_is_refused(
    stub_broker: StubBroker, settings: Any
) -> None:
    # Given a broker that takes messages of at most 4 KiB
    settings.JOBS_MAX_MESSAGE_BYTES = 4096

    # When a job's arguments alone are larger, Then it is refused, naming the limit; nothing is written
    error = _assert_refused(stub_broker, MessageTooLarge, "kwargs", kwargs={"blob": "x" * 5000})

    assert isinstance(error, InvalidJobArguments)
    assert "JOBS_MAX_MESSAGE_BYTES" in str(error)
    assert "4096" in str(error)


@pytest.mark.django_db
def test_job_submit__message_at_the_size_limit_is_accepted(stub_broker: StubBroker, settings: Any) -> None:
    settings.JOBS_MAX_MESSAGE_BYTES = 4096

    job = services.job_submit(actor="jobs.probe", kwargs={"blob": "x" * 3000})

    assert len(services.job_message(job).encode()) <= 4096


def test_message_check_size__raises_only_past_the_limit(settings: Any) -> None:
    # Given a message and a limit of exactly its encoded size
    message = dramatiq.Message(
        queue_name="default", actor_name="jobs.probe", args=("x" * 100,), kwargs={}, options={}
    )
    size = len(message.encode())
    settings.JOBS_MAX_MESSAGE_BYTES = size

    # Then that message passes, and one byte less of limit refuses it, naming both numbers
    assert validation.message_check_size(message) is None
    settings.JOBS_MAX_MESSAGE_BYTES = size - 1
    with pytest.raises(MessageTooLarge) as raised:
        validation.message_check_size(message)
    assert str(size) in str(raised.value)
    assert str(size - 1) in str(raised.value)
    assert raised.value.extra["size"] == size


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        pytest.param({"options": ["max_retries"]}, "options", id="options-list"),
        pytest.param({"options": "max_retries"}, "options", id="options-string"),
        pytest.param({"options": [("max_retries", 1)]}, "options", id="options-pairs"),
        pytest.param({"idempotency_key": 42}, "idempotency_key", id="key-int"),
        pytest.param({"idempotency_key": b"order-42"}, "idempotency_key", id="key-bytes"),
        pytest.param({"idempotency_key": "k" * 256}, "idempotency_key", id="key-too-long"),
    ],
)
@pytest.mark.django_db
def test_job_submit__options_and_idempotency_key_of_the_wrong_kind_are_refused(
    stub_broker: StubBroker, request_kwargs: dict[str, Any], field: str
) -> None:
    _assert_refused(stub_broker, InvalidJobOptions, field, **request_kwargs)


@pytest.mark.django_db
def test_job_submit__idempotency_key_of_255_characters_is_accepted(stub_broker: StubBroker) -> None:
    job = services.job_submit(actor="jobs.probe", idempotency_key="k" * 255)

    assert job.idempotency_key == "k" * 255


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
