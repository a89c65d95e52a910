"""Dead letters on the real RabbitMQ: the services on .XQ queues this file declares, and the console's pages.

The unit tier's Dramatiq runs on the in-memory StubBroker, but the dead-letter services talk to RabbitMQ
(settings.RABBITMQ_URL) with pika themselves, and so do these tests: the `rabbit` fixture declares the
actors' .XQ queues there, puts messages in them, reads them back, and deletes the queues afterwards.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions
import pytest
from django.conf import settings as django_settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from pika.adapters.blocking_connection import BlockingChannel

from apps.jobs.exceptions import UnknownQueue
from apps.jobs.models import Job
from apps.jobs.queues import queue_names
from apps.jobs.services import dead_letters

Status = Job.Status
DEATH = {"x-death": [{"time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "reason": "rejected"}]}
#: A RabbitMQ URL nobody answers on.
CLOSED_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:1/%2F"
#: RabbitMQ's reply codes: no such queue; a queue declared again with other arguments.
NOT_FOUND = 404
PRECONDITION_FAILED = 406


class Rabbit:
    """The test's own connection to the real RabbitMQ, and the .XQ queues it declared there."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self.connection = connection
        self._channel = connection.channel()
        #: The queues this fixture created (or re-created): deleted at teardown.
        self.declared: list[str] = []

    @property
    def channel(self) -> BlockingChannel:
        if not self._channel.is_open:  # the broker closes a channel on any error (a 404, a 406)
            self._channel = self.connection.channel()
        return self._channel

    def declare(self, queue: str) -> None:
        """Declare `queue` empty. One a worker declared with its own arguments is used as it is, and kept."""
        try:
            self.channel.queue_declare(queue=queue, durable=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != PRECONDITION_FAILED:
                raise
        else:
            self.declared.append(queue)
        self.channel.queue_purge(queue=queue)  # what an earlier run may have left

    def delete(self, queue: str) -> None:
        self.channel.queue_delete(queue=queue)
        if queue in self.declared:
            self.declared.remove(queue)

    def exists(self, queue: str) -> bool:
        try:
            self.channel.queue_declare(queue=queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != NOT_FOUND:
                raise
            return False
        return True

    def put(self, queue: str, body: bytes, headers: dict[str, Any] | None = None) -> None:
        """Publish a persistent message to `queue` with an x-death header, as RabbitMQ's dead letters have."""
        self.channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(
                headers=headers if headers is not None else DEATH, delivery_mode=2
            ),
        )

    def bodies(self, queue: str) -> list[bytes]:
        """Every message of `queue`, in order, all handed back in place (RabbitMQ keeps their positions)."""
        bodies: list[bytes] = []
        last_tag = None
        while True:
            method, _, body = self.channel.basic_get(queue=queue, auto_ack=False)
            if method is None:
                break
            bodies.append(body)
            last_tag = method.delivery_tag
        if last_tag is not None:
            self.channel.basic_nack(delivery_tag=last_tag, multiple=True, requeue=True)
        self._wait_ready(queue, len(bodies))
        return bodies

    def _wait_ready(self, queue: str, count: int, timeout: float = 5) -> None:
        """Wait until RabbitMQ counts `count` messages ready in `queue`.

        A requeue (nack) is asynchronous and RabbitMQ answers a passive declare ahead of it, so the
        count lags for a moment: wait, so that what runs next sees the queue as it is.
        """
        deadline = time.monotonic() + timeout
        while (ready := self.channel.queue_declare(queue=queue, passive=True).method.message_count) != count:
            assert time.monotonic() < deadline, f"{queue} holds {ready} messages ready, not {count}"
            time.sleep(0.01)

    def close(self) -> None:
        try:
            for queue in list(self.declared):
                self.delete(queue)
        finally:
            if self.connection.is_open:
                self.connection.close()


@pytest.fixture
def rabbit() -> Iterator[Rabbit]:
    """The actors' .XQ queues on the real RabbitMQ, empty; deleted afterwards, as later tiers' workers
    declare them with arguments of their own. Skips without RabbitMQ, but fails under CI."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(django_settings.RABBITMQ_URL))
    except pika.exceptions.AMQPError as exc:
        message = f"RabbitMQ at {django_settings.RABBITMQ_URL} is unreachable: {exc!r}"
        if os.environ.get("CI") or os.environ.get("TEST_REQUIRE_SERVICES"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    broker = Rabbit(connection)
    try:
        names = queue_names()
        assert {"default", "emails"} <= set(names), names
        for name in names:
            broker.declare(f"{name}.XQ")
        yield broker
    finally:
        broker.close()


def _body(job_id: Any, **fields: Any) -> bytes:
    message = {
        "queue_name": "default",
        "actor_name": "jobs.probe",
        "args": [],
        "kwargs": {"permanent": True},
        "options": {},
        "message_id": str(job_id),
        "message_timestamp": 1_767_322_800_000,
        **fields,
    }
    return json.dumps(message).encode()


@pytest.fixture
def failed_job(job_factory: Callable[..., Job]) -> Callable[..., Job]:
    def make(**overrides: Any) -> Job:
        return job_factory(
            **{
                "status": Status.FAILED,
                "attempts": 1,
                "last_error": "PermanentFailure: boom",
                "kwargs": {"permanent": True},
                **overrides,
            }
        )

    return make


# --- services -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_peek__decodes_every_message_and_hands_all_back_in_order(
    rabbit: Rabbit, failed_job: Callable[..., Job]
) -> None:
    job = failed_job()
    retried = json.loads(_body("not-a-uuid"))
    retried["options"] = {"retries": 3, "traceback": "Traceback...\nValueError: from the body\n"}
    rabbit.put("default.XQ", _body(job.pk))
    rabbit.put("default.XQ", b"\xff not json")
    rabbit.put("default.XQ", json.dumps(retried).encode())
    before = rabbit.bodies("default.XQ")

    letters = dead_letters.dead_letters_peek(queue="default")

    assert rabbit.bodies("default.XQ") == before
    known, raw, unknown = letters
    assert (known.message_id, known.job_status, known.job_attempts) == (str(job.pk), Status.FAILED, 1)
    assert known.error == "PermanentFailure: boom"  # the body has none: the ledger's
    assert known.dead_lettered_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert known.reason == "rejected"
    assert known.enqueued_at == datetime.fromtimestamp(1_767_322_800, tz=UTC)
    assert not raw.decoded and raw.raw is not None and "not json" in raw.raw and raw.message_id == ""
    assert (unknown.retries, unknown.error, unknown.job_exists) == (3, "ValueError: from the body", False)
    assert dead_letters.dead_letters_peek(queue="default", limit=1) == [known]
    assert rabbit.bodies("default.XQ") == before


@pytest.mark.django_db
def test_requeue__retries_the_job_then_removes_only_its_message(
    rabbit: Rabbit, failed_job: Callable[..., Job], admin_user: Any
) -> None:
    first, second, third = failed_job(), failed_job(), failed_job()
    for job in (first, second, third):
        rabbit.put("default.XQ", _body(job.pk))

    retry = dead_letters.dead_letter_requeue(
        queue="default", message_id=str(second.pk), requested_by=admin_user
    )

    assert retry.retry_of_id == second.pk and retry.source == Job.Source.ADMIN
    assert rabbit.bodies("default.XQ") == [_body(first.pk), _body(third.pk)]
    assert "retried as job" in LogEntry.objects.get(object_id=str(second.pk)).change_message


@pytest.mark.django_db
def test_requeue__refused_leaves_the_message_in_place(
    rabbit: Rabbit, failed_job: Callable[..., Job], job_factory: Callable[..., Job]
) -> None:
    # Given one message whose job the ledger lacks, one whose job is being retried, one already retried
    unknown = "0b7e8a57-5c4c-4d55-8c3d-000000000000"
    being_retried, retried = failed_job(), failed_job()
    job_factory(status=Status.RUNNING, retry_of=being_retried)
    job_factory(status=Status.SUCCEEDED, retry_of=retried)
    for job_id in (unknown, being_retried.pk, retried.pk):
        rabbit.put("default.XQ", _body(job_id))
    before = rabbit.bodies("default.XQ")

    reasons = {}
    for job_id in (unknown, being_retried.pk, retried.pk):
        with pytest.raises(dead_letters.DeadLetterNotRequeued) as refused:
            dead_letters.dead_letter_requeue(queue="default", message_id=str(job_id))
        reasons[str(job_id)] = refused.value.message

    assert "has no job" in reasons[unknown]
    assert "already being retried" in reasons[str(being_retried.pk)]
    assert "already retried as job" in reasons[str(retried.pk)]
    assert rabbit.bodies("default.XQ") == before
    assert Job.objects.filter(retry_of=being_retried).count() == 1
    assert Job.objects.filter(retry_of=retried).count() == 1
    with pytest.raises(dead_letters.DeadLetterNotFound):
        dead_letters.dead_letter_requeue(queue="default", message_id="nope")


@pytest.mark.django_db
def test_requeue_all__requeues_what_it_can_and_keeps_the_rest_in_order(
    rabbit: Rabbit, failed_job: Callable[..., Job], admin_user: Any
) -> None:
    first, second = failed_job(), failed_job()
    rabbit.put("default.XQ", b"garbage")
    rabbit.put("default.XQ", _body(first.pk))
    rabbit.put("default.XQ", _body(first.pk))  # a second copy: the job must not run twice
    rabbit.put("default.XQ", _body(second.pk))

    report = dead_letters.dead_letters_requeue_all(queue="default", requested_by=admin_user)

    assert [message_id for message_id, _ in report.requeued] == [str(first.pk), str(second.pk)]
    assert [message_id for message_id, _ in report.skipped] == ["", str(first.pk)]
    assert "already being retried" in report.skipped[1][1]
    assert rabbit.bodies("default.XQ") == [b"garbage", _body(first.pk)]
    assert report.remaining == 0
    assert Job.objects.filter(retry_of=first).count() == 1


@pytest.mark.django_db
def test_purge__drops_every_message_and_records_it_on_the_jobs(
    rabbit: Rabbit, failed_job: Callable[..., Job], admin_user: Any
) -> None:
    job = failed_job()
    rabbit.put("default.XQ", _body(job.pk))
    rabbit.put("default.XQ", b"garbage")

    assert dead_letters.dead_letters_purge(queue="default", requested_by=admin_user) == 2

    assert rabbit.bodies("default.XQ") == []
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert "Purged its dead letter" in LogEntry.objects.get(object_id=str(job.pk)).change_message


def test_services__a_missing_xq_is_empty_and_an_unknown_queue_refused(rabbit: Rabbit) -> None:
    rabbit.delete("emails.XQ")  # as before any worker declared the queue
    assert not rabbit.exists("emails.XQ")
    assert dead_letters.dead_letters_peek(queue="emails") == []
    assert dead_letters.dead_letter_counts()["emails"] == 0
    with pytest.raises(UnknownQueue):
        dead_letters.dead_letters_peek(queue="nope")


# --- console pages ----------------------------------------------------------------------------------


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
def test_queue_page__escapes_everything_a_message_carries(
    rabbit: Rabbit, operator: Client, failed_job: Callable[..., Job]
) -> None:
    script = "<script>alert(1)</script>"
    job = failed_job()
    rabbit.put(
        "default.XQ",
        _body(
            job.pk, actor_name=script, args=[script], kwargs={script: script}, options={"traceback": script}
        ),
    )
    rabbit.put("default.XQ", script.encode())

    html = operator.get(reverse("console:dead-letters-queue", args=["default"])).content.decode()

    assert script not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert reverse("admin:jobs_job_change", args=[job.pk]) in html
    assert html.count('value="Requeue"') == 1  # the undecodable body cannot be requeued


@pytest.mark.django_db
def test_pages__rabbitmq_down_is_reported_not_a_crash(operator: Client, settings: Any) -> None:
    settings.RABBITMQ_URL = CLOSED_RABBITMQ_URL

    overview = operator.get(reverse("console:dead-letters"))
    page = operator.get(reverse("console:dead-letters-queue", args=["default"]))
    requeue = operator.post(reverse("console:dead-letters-requeue", args=["default"]), {"message_id": "x"})

    assert overview.status_code == page.status_code == 503
    assert "RabbitMQ is unreachable" in overview.content.decode()
    assert requeue.status_code == 302
    assert ["nothing was requeued" in str(m) for m in get_messages(requeue.wsgi_request)] == [True]


@pytest.mark.django_db
def test_pages__need_a_staff_user_with_view_job(rabbit: Rabbit, django_user_model: Any) -> None:
    url = reverse("console:dead-letters")
    assert Client().get(url).status_code == 302  # to the admin's login
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(content_type__app_label="jobs", codename="view_job"))
    client.force_login(django_user_model.objects.get(pk=staff.pk))
    assert client.get(url).status_code == 200
    assert client.get(reverse("console:dead-letters-queue", args=["nope"])).status_code == 404
    assert client.post(reverse("console:dead-letters-purge", args=["default"])).status_code == 403


def test_requeue_all__counts_exactly_the_messages_it_did_not_look_at(rabbit: Any) -> None:
    # Five messages no worker could decode; a requeue-all limited to two looks at two, skips them.
    for index in range(5):
        rabbit.put("default.XQ", f"not json {index}".encode())

    report = dead_letters.dead_letters_requeue_all(queue="default", requested_by=None, limit=2)

    assert (len(report.requeued), len(report.skipped), report.remaining) == (0, 2, 3)
    assert rabbit.bodies("default.XQ") == [f"not json {index}".encode() for index in range(5)]
