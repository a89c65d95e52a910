"""The seed's actors end to end on the StubBroker: ledger, retries, limits, and the work they do."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from apps.jobs import services, signals
from apps.jobs.exceptions import PermanentFailure, TransientFailure
from apps.jobs.models import BatchItemResult, ExternalRecord, Job, JobAttempt, Report
from tests.unit.conftest import run_all, start_worker

pytestmark = pytest.mark.django_db(transaction=True)

Status = Job.Status
Outcome = JobAttempt.Outcome


def _run(broker: StubBroker, worker: dramatiq.Worker, job: Job, **run_kwargs: Any) -> Job:
    """Process every queue until idle, then return the job as the ledger has it."""
    run_all(broker, worker, **run_kwargs)
    job.refresh_from_db()
    return job


def _outcomes(job: Job) -> list[str]:
    return list(job.attempt_set.order_by("number").values_list("outcome", flat=True))


def _transitions(job: Job) -> list[str]:
    """The job's statuses in order, without "queued": the worker may start a job before the
    publish confirmation is recorded, and then the ledger rightly refuses to move it back."""
    statuses = list(job.events.order_by("at", "id").values_list("to_status", flat=True))
    if Status.QUEUED in statuses:
        assert statuses.index(Status.QUEUED) == 1, statuses
    return [status for status in statuses if status != Status.QUEUED]


@pytest.fixture
def media_root(settings: Any, tmp_path: Any) -> Any:
    """Report files go to a temporary directory, not the checkout's var/media."""
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def signal_log() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every ledger signal sent during the test, as (name, kwargs), from any thread."""
    log: list[tuple[str, dict[str, Any]]] = []
    receivers = {}
    for name in ("job_started", "job_progress", "job_succeeded", "job_retrying", "job_failed"):

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            log.append((_name, kwargs))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver, weak=False, dispatch_uid=f"tests.signal_log.{name}")
    yield log
    for name in receivers:
        getattr(signals, name).disconnect(dispatch_uid=f"tests.signal_log.{name}")


# --- probe: success, retries, permanent failures, time limits ------------------------------------------


def test_probe__succeeds_and_stores_its_result(stub_broker: StubBroker, stub_worker: dramatiq.Worker) -> None:
    # Given a submitted probe
    job = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 20})

    # When the worker runs it
    job = _run(stub_broker, stub_worker, job)

    # Then the ledger holds its result after one attempt that succeeded
    assert job.status == Status.SUCCEEDED
    assert job.attempts == 1
    assert job.result["attempt"] == 1
    assert job.result["slept_ms"] >= 20
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.finished_at >= job.started_at
    assert job.last_error == ""
    assert _outcomes(job) == [Outcome.SUCCEEDED]
    attempt = job.attempt_set.get()
    assert attempt.finished_at is not None
    assert attempt.duration_ms is not None
    assert attempt.error_class == ""
    assert _transitions(job) == [Status.PENDING, Status.RUNNING, Status.SUCCEEDED]


def test_probe__transient_failures_are_retried_until_it_succeeds(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, signal_log: list[tuple[str, dict[str, Any]]]
) -> None:
    # Given a probe that fails its first two attempts
    job = services.job_submit(actor="jobs.probe", kwargs={"fail_attempts": 2})

    # When the worker runs it, retries included
    job = _run(stub_broker, stub_worker, job)

    # Then it succeeds on attempt 3, with attempts 1 and 2 recorded as retried with their error
    assert job.status == Status.SUCCEEDED
    assert job.attempts == 3
    assert job.result["attempt"] == 3
    assert job.next_retry_at is None
    attempts = list(job.attempt_set.order_by("number"))
    assert [a.outcome for a in attempts] == [Outcome.RETRIED, Outcome.RETRIED, Outcome.SUCCEEDED]
    for failed in attempts[:2]:
        assert failed.error_class == "apps.jobs.exceptions.TransientFailure"
        assert "fails attempt" in failed.error_message
        assert "TransientFailure" in failed.traceback

    # And while it waited for each retry, the job was retrying with the time of the next attempt
    retrying = [kwargs["job"] for name, kwargs in signal_log if name == "job_retrying"]
    assert len(retrying) == 2
    for waiting in retrying:
        assert waiting.status == Status.RETRYING
        assert waiting.next_retry_at is not None
        # jobs.probe backs off 500 ms, then 1 s (each with up to 100 % jitter)
        assert dt.timedelta(0) < waiting.next_retry_at - waiting.updated_at <= dt.timedelta(seconds=3)
        assert waiting.last_error.startswith("TransientFailure")
    assert _transitions(job) == [
        Status.PENDING,
        Status.RUNNING,
        Status.RETRYING,
        Status.RUNNING,
        Status.RETRYING,
        Status.RUNNING,
        Status.SUCCEEDED,
    ]


def test_probe__permanent_failure_is_not_retried(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    job = services.job_submit(actor="jobs.probe", kwargs={"permanent": True})

    job = _run(stub_broker, stub_worker, job)

    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert _outcomes(job) == [Outcome.FAILED]
    assert job.last_error.startswith("PermanentFailure")
    assert job.attempt_set.get().error_class == "apps.jobs.exceptions.PermanentFailure"
    assert job.finished_at is not None
    # The message went to the dead-letter queue, not back to the work queue
    assert [m.message_id for m in stub_broker.dead_letters] == [str(job.pk)]


def test_probe__retries_exhausted_fails_after_max_retries_plus_one_attempts(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    # Given a probe allowed one retry that fails its first five attempts
    job = services.job_submit(
        actor="jobs.probe", kwargs={"fail_attempts": 5}, options={"max_retries": 1, "min_backoff": 50}
    )

    job = _run(stub_broker, stub_worker, job)

    # Then it fails for good after two attempts, keeping the last error and its traceback
    assert job.max_retries == 1
    assert job.status == Status.FAILED
    assert job.attempts == 2
    assert _outcomes(job) == [Outcome.RETRIED, Outcome.FAILED]
    assert "fails attempt 2 of the first 5" in job.last_error
    assert "TransientFailure" in job.last_traceback
    assert "Traceback" in job.last_traceback


def test_probe__an_attempt_interrupted_by_shutdown_does_not_spend_a_retry(
    stub_broker: StubBroker, transactional_db: None, _process_booted: None
) -> None:
    # Given a probe allowed one retry whose first attempt a stopping worker abandoned
    job = services.job_submit(
        actor="jobs.probe", kwargs={"fail_attempts": 5}, options={"max_retries": 1, "min_backoff": 50}
    )
    services.job_start(job_id=job.pk)
    services.job_interrupt(job_id=job.pk, attempt=1)

    # When a worker then runs the redelivered message to the end
    worker = start_worker(stub_broker)
    try:
        job = _run(stub_broker, worker, job)
    finally:
        worker.stop()

    # Then it still gets its retry: two counted attempts after the interrupted one
    assert job.status == Status.FAILED
    assert (job.attempts, job.interruptions, job.counted_attempts) == (3, 1, 2)
    assert _outcomes(job) == [Outcome.INTERRUPTED, Outcome.RETRIED, Outcome.FAILED]


def test_probe__hard_time_limit_stops_it(stub_broker: StubBroker, stub_worker: dramatiq.Worker) -> None:
    # Given a probe that would sleep 10 s under a 1.5 s hard limit
    job = services.job_submit(
        actor="jobs.probe",
        kwargs={"sleep_ms": 10_000},
        options={"time_limit": 1500, "soft_time_limit": 60_000, "max_retries": 0},
    )

    # When the worker runs it
    started = time.monotonic()
    job = _run(stub_broker, stub_worker, job)
    elapsed = time.monotonic() - started

    # Then it was interrupted long before it finished sleeping, and failed
    assert elapsed < 6
    assert job.status == Status.FAILED
    assert job.attempts == 1
    attempt = job.attempt_set.get()
    assert attempt.outcome == Outcome.FAILED
    assert "TimeLimitExceeded" in attempt.error_class
    assert "TimeLimitExceeded" in job.last_error


def test_probe__soft_time_limit_raises_a_catchable_error_first(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    job = services.job_submit(
        actor="jobs.probe",
        kwargs={"sleep_ms": 10_000},
        options={"time_limit": 4000, "soft_time_limit": 1000, "max_retries": 0},
    )

    started = time.monotonic()
    job = _run(stub_broker, stub_worker, job)
    elapsed = time.monotonic() - started

    assert elapsed < 3.5  # before the hard limit
    assert job.status == Status.FAILED
    attempt = job.attempt_set.get()
    assert attempt.error_class == "apps.jobs.exceptions.SoftTimeLimitExceeded"
    assert job.last_error.startswith("SoftTimeLimitExceeded")
    # The probe reported progress while it slept, before the limit stopped it
    assert job.progress_total == 10_000
    assert 0 < job.progress_current < 10_000


# --- send_email -----------------------------------------------------------------------------------------


def test_send_email__sends_one_message_with_the_job_id_in_its_message_id(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, mailoutbox: list[Any], settings: Any
) -> None:
    job = services.job_submit(
        actor="jobs.send_email",
        kwargs={"to": "ada@example.com", "subject": "Hello", "body": "Plain", "html_body": "<p>Rich</p>"},
    )

    job = _run(stub_broker, stub_worker, job)

    assert job.status == Status.SUCCEEDED
    assert job.result == {"sent": 1, "to": ["ada@example.com"]}
    assert len(mailoutbox) == 1
    email = mailoutbox[0]
    assert email.to == ["ada@example.com"]
    assert email.subject == "Hello"
    assert email.from_email == settings.DEFAULT_FROM_EMAIL
    assert email.alternatives[0].content == "<p>Rich</p>"
    message_id = email.message()["Message-ID"]
    assert str(job.pk) in message_id
    assert message_id == f"<{job.pk}@{settings.EMAIL_MESSAGE_ID_DOMAIN}>"


def test_send_email__invalid_address_fails_at_once(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, mailoutbox: list[Any]
) -> None:
    job = services.job_submit(
        actor="jobs.send_email", kwargs={"to": ["not-an-address"], "subject": "x", "body": "never sent"}
    )

    job = _run(stub_broker, stub_worker, job)

    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert job.attempt_set.get().error_class == "apps.jobs.exceptions.PermanentFailure"
    assert "not-an-address" in job.last_error
    assert mailoutbox == []


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_send_email__unreachable_smtp_server_is_retried(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, settings: Any, mailoutbox: list[Any]
) -> None:
    # Given the SMTP backend pointed at a port nobody listens on (the worker reads settings per call)
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": _closed_port(), "timeout": 2},
        }
    }
    job = services.job_submit(
        actor="jobs.send_email",
        kwargs={"to": "ada@example.com", "subject": "Hello", "body": "Body"},
        options={"max_retries": 1, "min_backoff": 100},
    )

    # When the worker runs it
    job = _run(stub_broker, stub_worker, job)

    # Then the outage was treated as passing: retried, then failed when retries ran out
    assert job.attempts == 2
    assert _outcomes(job) == [Outcome.RETRIED, Outcome.FAILED]
    assert job.status == Status.FAILED
    error_classes = set(job.attempt_set.values_list("error_class", flat=True))
    assert error_classes == {"apps.jobs.exceptions.TransientFailure"}, job.last_error
    assert "could not be reached" in job.last_error
    assert mailoutbox == []


def test_send_email__duplicate_delivery_of_a_succeeded_job_does_not_send_again(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, mailoutbox: list[Any]
) -> None:
    # Given an email job that succeeded
    job = services.job_submit(
        actor="jobs.send_email", kwargs={"to": "ada@example.com", "subject": "Once", "body": "Only once"}
    )
    job = _run(stub_broker, stub_worker, job)
    assert job.status == Status.SUCCEEDED
    assert len(mailoutbox) == 1

    # When RabbitMQ delivers its message a second time
    stub_broker.enqueue(services.job_message(job))
    job = _run(stub_broker, stub_worker, job)

    # Then the actor body did not run again and the ledger is unchanged
    assert len(mailoutbox) == 1
    assert job.status == Status.SUCCEEDED
    assert job.attempts == 1
    assert JobAttempt.objects.filter(job=job).count() == 1
    assert Job.objects.count() == 1


class _SmtpServer:
    """A minimal SMTP server on 127.0.0.1: answers per command, queued per test, 250 by default."""

    def __init__(self) -> None:
        #: Replies to send, in order, for MAIL, RCPT and DATA_END (the answer after the message).
        self.replies: dict[str, list[str]] = {"MAIL": [], "RCPT": [], "DATA_END": []}
        self.messages: list[bytes] = []
        self.port = 0

    def reply(self, command: str) -> bytes:
        queued = self.replies[command]
        return (queued.pop(0) if queued else "250 OK").encode() + b"\r\n"


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[_SmtpServer]:
    """A local SMTP server, and the default mailer pointed at it (the worker reads settings per call)."""
    server_state = _SmtpServer()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 test ESMTP\r\n")
            for line in self.rfile:
                verb = line[:4].upper()
                if verb in (b"MAIL", b"RCPT"):
                    self.wfile.write(server_state.reply(verb.decode()))
                elif verb == b"DATA":
                    self.wfile.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    data = b"".join(iter(self.rfile.readline, b".\r\n"))
                    answer = server_state.reply("DATA_END")
                    if answer.startswith(b"250"):
                        server_state.messages.append(data)
                    self.wfile.write(answer)
                elif verb == b"QUIT":
                    self.wfile.write(b"221 Bye\r\n")
                    return
                else:  # EHLO, HELO, RSET, NOOP
                    self.wfile.write(b"250 OK\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": server_state.port, "timeout": 5},
        }
    }
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.django_db
def test_email_send__smtp_delivers_with_the_message_id(smtp_server: _SmtpServer, settings: Any) -> None:
    sent = services.email_send(to=["ada@example.com"], subject="Hi", body="Body", message_id="abc-123")

    assert sent == 1
    assert len(smtp_server.messages) == 1
    assert f"Message-ID: <abc-123@{settings.EMAIL_MESSAGE_ID_DOMAIN}>".encode() in smtp_server.messages[0]


@pytest.mark.parametrize(
    ("command", "answer", "error"),
    [
        pytest.param("RCPT", "450 4.2.0 Greylisted, try again later", TransientFailure, id="rcpt-450"),
        pytest.param("RCPT", "452 4.2.2 Mailbox full", TransientFailure, id="rcpt-452"),
        pytest.param("RCPT", "550 5.1.1 No such user", PermanentFailure, id="rcpt-550"),
        pytest.param("MAIL", "451 4.3.0 Try again later", TransientFailure, id="mail-451"),
        pytest.param("MAIL", "421 4.3.2 Shutting down", TransientFailure, id="mail-421"),
        pytest.param("MAIL", "553 5.7.1 Sender not allowed", PermanentFailure, id="mail-553"),
        pytest.param("DATA_END", "452 4.3.1 Insufficient storage", TransientFailure, id="data-452"),
        pytest.param("DATA_END", "554 5.7.1 Rejected as spam", PermanentFailure, id="data-554"),
    ],
)
@pytest.mark.django_db
def test_email_send__smtp_answers_4xx_are_transient_and_5xx_permanent(
    smtp_server: _SmtpServer, command: str, answer: str, error: type[Exception]
) -> None:
    # Given a mail server that answers `command` with `answer`
    smtp_server.replies[command].append(answer)

    # When an email is sent, the error says whether a retry may help
    with pytest.raises(error):
        services.email_send(to=["ada@example.com"], subject="Hi", body="Body")

    assert smtp_server.messages == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"subject": "Hello\nBcc: everyone@example.com"}, id="subject-line-break"),
        pytest.param({"from_email": "sender@example.com\nBcc: x@example.com"}, id="from-line-break"),
    ],
)
@pytest.mark.django_db
def test_email_send__header_that_cannot_be_built_is_permanent(
    mailoutbox: list[Any], headers: dict[str, str]
) -> None:
    fields = {"to": ["ada@example.com"], "subject": "Hello", "body": "Body", **headers}

    with pytest.raises(PermanentFailure, match="cannot be built"):
        services.email_send(**fields)

    assert mailoutbox == []


def test_send_email__greylisted_email_is_delivered_on_retry(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, smtp_server: _SmtpServer
) -> None:
    # Given a mail server that defers the first delivery (greylisting)
    smtp_server.replies["RCPT"].append("450 4.2.0 Greylisted, try again later")
    job = services.job_submit(
        actor="jobs.send_email",
        kwargs={"to": "ada@example.com", "subject": "Hello", "body": "Body"},
        options={"max_retries": 2, "min_backoff": 100},
    )

    # When the worker runs the job
    job = _run(stub_broker, stub_worker, job)

    # Then the deferral was retried and the second attempt delivered the email
    assert job.status == Status.SUCCEEDED, job.last_error
    assert _outcomes(job) == [Outcome.RETRIED, Outcome.SUCCEEDED]
    assert len(smtp_server.messages) == 1


# --- generate_report ----------------------------------------------------------------------------------------


def test_generate_report__writes_every_row_in_batches_with_progress(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, media_root: Any
) -> None:
    # Given 2,500 users, more than two batches of 1,000
    user_model = get_user_model()
    user_model.objects.bulk_create(
        user_model(username=f"user{i:04d}", email=f"user{i:04d}@example.com") for i in range(2500)
    )

    # When a users report is saved (its trigger submits generate_report) and the worker runs
    report = Report.objects.create(type=Report.Type.USERS)
    run_all(stub_broker, stub_worker)

    # Then the CSV holds the header and one row per user
    report.refresh_from_db()
    assert report.row_count == 2500
    assert report.finished_at is not None
    assert report.file.name.startswith("reports/users-")
    assert (media_root / report.file.name).exists()
    with report.file.open("rb") as handle:
        rows = list(csv.reader(io.StringIO(handle.read().decode())))
    assert rows[0] == ["id", "username", "email", "is_staff", "is_active", "date_joined", "last_login"]
    assert len(rows) == 2501
    assert {row[1] for row in rows[1:]} == {f"user{i:04d}" for i in range(2500)}

    # And the job succeeded with its progress at the end
    job = report.job
    assert job is not None
    assert job.status == Status.SUCCEEDED
    assert job.result == {"report_id": report.pk, "rows": 2500, "file": report.file.name}
    assert (job.progress_current, job.progress_total) == (2500, 2500)
    assert job.progress_message == "2500 of 2500 rows"


def test_generate_report__missing_report_fails_permanently(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    job = services.job_submit(actor="jobs.generate_report", args=[999_999])

    job = _run(stub_broker, stub_worker, job)

    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert "Report 999999 does not exist" in job.last_error


# --- process_batch ------------------------------------------------------------------------------------------


def test_process_batch__records_every_item_and_counts_outcomes(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    # Given a batch with valid and invalid addresses
    items = ["ada@example.com", " Bob@Example.COM ", "broken@", "also broken", 42, "eve@example.org"]
    job = services.job_submit(actor="jobs.process_batch", kwargs={"items": items})

    # When the worker runs it
    job = _run(stub_broker, stub_worker, job)

    # Then the batch succeeded with the counts, whatever its items did
    assert job.status == Status.SUCCEEDED
    assert job.result == {"processed": 6, "succeeded": 3, "failed": 3}
    # And each item has one result row, in order
    results = list(BatchItemResult.objects.filter(job=job).order_by("index"))
    assert [r.index for r in results] == list(range(6))
    assert [r.item for r in results] == items
    ok, bad = BatchItemResult.Outcome.SUCCEEDED, BatchItemResult.Outcome.FAILED
    assert [r.outcome for r in results] == [ok, ok, bad, bad, bad, ok]
    assert results[1].result == {"email": "Bob@example.com"}
    assert "not a valid email address" in results[2].error
    assert "expected an address, got int" in results[4].error
    assert (job.progress_current, job.progress_total) == (6, 6)

    # When the batch runs again for the same job (a redelivery)
    again = services.batch_process(job_id=job.pk, items=items, operation="validate_email")

    # Then no item is recorded twice, and the counts are the same
    assert again == {"processed": 6, "succeeded": 3, "failed": 3}
    assert BatchItemResult.objects.filter(job=job).count() == 6


def test_process_batch__unknown_operation_fails_permanently(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    job = services.job_submit(actor="jobs.process_batch", kwargs={"items": [1], "operation": "explode"})

    job = _run(stub_broker, stub_worker, job)

    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert "Unknown batch operation 'explode'" in job.last_error
    assert BatchItemResult.objects.count() == 0


@pytest.mark.django_db
def test_batch_process__outside_a_job_counts_outcomes_without_recording_them() -> None:
    items = ["ada@example.com", "broken@", 7]

    summary = services.batch_process(job_id=None, items=items, operation="validate_email")

    assert summary == {"processed": 3, "succeeded": 1, "failed": 2}
    assert BatchItemResult.objects.count() == 0


# --- sync_external_data against a real local HTTP server ----------------------------------------------------


class _Source:
    """What the local HTTP server answers: a status and a JSON body per path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, Any]] = {}
        self.requests: list[str] = []


@pytest.fixture
def http_source() -> Iterator[tuple[str, _Source]]:
    """A real HTTP server on 127.0.0.1 (random port) serving `source.routes`; yields (base URL, source)."""
    source = _Source()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            source.requests.append(self.path)
            status, payload = source.routes.get(self.path, (404, {"error": "not found"}))
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", source
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_sync_external_data__upserts_and_a_second_run_updates(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, http_source: tuple[str, _Source]
) -> None:
    base_url, source = http_source
    url = f"{base_url}/records.json"
    # Given a source with two records
    source.routes["/records.json"] = (200, [{"id": 1, "name": "one"}, {"id": "b", "name": "bee"}])

    # When the sync job runs
    first = services.job_submit(actor="jobs.sync_external_data", kwargs={"url": url})
    first = _run(stub_broker, stub_worker, first)

    # Then both records are stored
    assert first.status == Status.SUCCEEDED
    assert first.result == {"fetched": 2, "created": 2, "updated": 0}
    assert dict(ExternalRecord.objects.values_list("external_id", "data")) == {
        "1": {"id": 1, "name": "one"},
        "b": {"id": "b", "name": "bee"},
    }
    synced_before = ExternalRecord.objects.get(external_id="1").last_synced_at

    # When the source changes a record, adds one, and the job runs again
    source.routes["/records.json"] = (
        200,
        [{"id": 1, "name": "ONE"}, {"id": "b", "name": "bee"}, {"id": 3, "name": "three"}],
    )
    second = services.job_submit(actor="jobs.sync_external_data", kwargs={"url": url})
    second = _run(stub_broker, stub_worker, second)

    # Then existing records are updated in place, not duplicated
    assert second.status == Status.SUCCEEDED
    assert second.result == {"fetched": 3, "created": 1, "updated": 2}
    assert ExternalRecord.objects.count() == 3
    record = ExternalRecord.objects.get(external_id="1")
    assert record.data == {"id": 1, "name": "ONE"}
    assert record.last_synced_at > synced_before
    assert record.first_synced_at < record.last_synced_at
    assert source.requests == ["/records.json", "/records.json"]


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        pytest.param(500, {"error": "boom"}, TransientFailure, id="500-transient"),
        pytest.param(503, {"error": "busy"}, TransientFailure, id="503-transient"),
        pytest.param(429, {"error": "slow down"}, TransientFailure, id="429-transient"),
        pytest.param(404, {"error": "gone"}, PermanentFailure, id="404-permanent"),
        pytest.param(200, {"not": "a list"}, PermanentFailure, id="object-not-list-permanent"),
        pytest.param(200, [{"name": "no id"}], PermanentFailure, id="item-without-id-permanent"),
    ],
)
@pytest.mark.django_db
def test_external_records_sync__error_answers(
    http_source: tuple[str, _Source], status: int, payload: Any, error: type[Exception]
) -> None:
    base_url, source = http_source
    source.routes["/records.json"] = (status, payload)

    with pytest.raises(error):
        services.external_records_sync(url=f"{base_url}/records.json")

    assert ExternalRecord.objects.count() == 0


@pytest.mark.django_db
def test_external_records_sync__unreachable_source_is_transient() -> None:
    with pytest.raises(TransientFailure, match="did not answer"):
        services.external_records_sync(url=f"http://127.0.0.1:{_closed_port()}/records.json")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("not a url", id="no-schema"),
        pytest.param("ftp://127.0.0.1/records.json", id="unsupported-schema"),
        pytest.param("http://", id="no-host"),
    ],
)
@pytest.mark.django_db
def test_external_records_sync__malformed_url_is_permanent(url: str) -> None:
    with pytest.raises(PermanentFailure, match="not a URL that can be fetched"):
        services.external_records_sync(url=url)


def test_sync_external_data__permanent_answer_fails_the_job_at_once(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, http_source: tuple[str, _Source]
) -> None:
    base_url, _source = http_source

    job = services.job_submit(actor="jobs.sync_external_data", kwargs={"url": f"{base_url}/missing.json"})
    job = _run(stub_broker, stub_worker, job)

    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert "404" in job.last_error


# --- schedules: housekeeping -------------------------------------------------------------------------------


def test_cleanup_expired_sessions__deletes_only_expired_sessions(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    # Given two expired sessions and one still valid
    now = timezone.now()
    for key, expires in [("old-1", -dt.timedelta(days=1)), ("old-2", -dt.timedelta(seconds=5))]:
        Session.objects.create(session_key=key, session_data="x", expire_date=now + expires)
    Session.objects.create(session_key="live", session_data="x", expire_date=now + dt.timedelta(days=1))

    # When the cleanup job runs
    job = services.job_submit(actor="jobs.cleanup_expired_sessions")
    job = _run(stub_broker, stub_worker, job)

    # Then only the valid session is left
    assert job.status == Status.SUCCEEDED
    assert job.result == {"deleted": 2}
    assert list(Session.objects.values_list("session_key", flat=True)) == ["live"]


def test_generate_daily_report__builds_one_report_of_the_day_however_often_it_ticks(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, job_factory: Callable[..., Job]
) -> None:
    # Given jobs created on the day asked for and on the day after
    day = dt.date(2026, 3, 14)
    on_the_day = job_factory(actor_name="jobs.send_email")
    the_day_after = job_factory(actor_name="jobs.send_email")
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=timezone.get_current_timezone())
    Job.objects.filter(pk=on_the_day.pk).update(created_at=noon)
    Job.objects.filter(pk=the_day_after.pk).update(created_at=noon + dt.timedelta(days=1))

    # When the daily tick runs twice for that day (a doubled tick, or an operator's rerun)
    ticks = [
        services.job_submit(actor="jobs.generate_daily_report", kwargs={"day": day.isoformat()})
        for _ in range(2)
    ]
    run_all(stub_broker, stub_worker)

    # Then both succeed with the same report, built once, holding only that day's jobs
    results = [Job.objects.get(pk=tick.pk).result for tick in ticks]
    report = Report.objects.get()
    assert results == [{"report_id": report.pk, "day": "2026-03-14"}] * 2
    builds = Job.objects.filter(actor_name="jobs.generate_report")
    assert [(job.status, job.trigger_object_id) for job in builds] == [(Status.SUCCEEDED, str(report.pk))]
    report.refresh_from_db()
    rows = list(csv.DictReader(io.StringIO(report.file.read().decode())))
    assert [row["id"] for row in rows] == [str(on_the_day.pk)]


def test_prune_finished_jobs__deletes_old_finished_jobs_and_keeps_young_failed_ones(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, job_factory: Callable[..., Job], settings: Any
) -> None:
    # Given jobs finished at various ages (30-day retention, 90 days for failed jobs)
    settings.JOBS_RETENTION_DAYS = 30
    settings.JOBS_FAILED_RETENTION_DAYS = 90
    now = timezone.now()

    def finished(status: str, days_ago: float) -> Job:
        return job_factory(status=status, finished_at=now - dt.timedelta(days=days_ago))

    old_succeeded = finished(Status.SUCCEEDED, 31)
    old_cancelled = finished(Status.CANCELLED, 45)
    old_skipped = finished(Status.SKIPPED, 60)
    young_succeeded = finished(Status.SUCCEEDED, 29)
    failed_past_finished_retention = finished(Status.FAILED, 45)
    failed_past_failed_retention = finished(Status.FAILED, 91)
    still_queued = job_factory(status=Status.QUEUED)
    Job.objects.filter(pk=still_queued.pk).update(created_at=now - dt.timedelta(days=365))

    # When the prune job runs
    job = services.job_submit(actor="jobs.prune_finished_jobs")
    job = _run(stub_broker, stub_worker, job)

    # Then only finished jobs past their retention are gone
    assert job.status == Status.SUCCEEDED
    assert job.result == {"finished": 3, "failed": 1}
    remaining = set(Job.objects.values_list("pk", flat=True))
    assert remaining == {
        young_succeeded.pk,
        failed_past_finished_retention.pk,
        still_queued.pk,
        job.pk,
    }
    for gone in (old_succeeded, old_cancelled, old_skipped, failed_past_failed_retention):
        assert gone.pk not in remaining


# --- signals ---------------------------------------------------------------------------------------------


def test_signals__are_sent_for_start_progress_success_and_failure(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, signal_log: list[tuple[str, dict[str, Any]]]
) -> None:
    # Given a probe that sleeps long enough to report progress, and one that fails for good
    succeeding = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 600})
    failing = services.job_submit(actor="jobs.probe", kwargs={"permanent": True})

    # When the worker runs both
    run_all(stub_broker, stub_worker)

    # Then each job sent its signals, with their documented arguments
    def sent(name: str, job: Job) -> list[dict[str, Any]]:
        return [
            kwargs for signal_name, kwargs in signal_log if signal_name == name and _job_id(kwargs) == job.pk
        ]

    started = sent("job_started", succeeding)
    assert len(started) == 1
    assert started[0]["attempt"] == 1
    assert started[0]["job"].pk == succeeding.pk

    succeeded = sent("job_succeeded", succeeding)
    assert len(succeeded) == 1
    assert succeeded[0]["result"]["attempt"] == 1
    assert succeeded[0]["job"].status == Status.SUCCEEDED

    progress = sent("job_progress", succeeding)
    assert progress, "the probe reports progress while it sleeps"
    assert progress[-1]["current"] == 600
    assert progress[-1]["total"] == 600
    assert progress[-1]["message"] == "sleeping"

    assert len(sent("job_started", failing)) == 1
    failed = sent("job_failed", failing)
    assert len(failed) == 1
    assert failed[0]["job"].status == Status.FAILED
    assert sent("job_succeeded", failing) == []
    assert sent("job_failed", succeeding) == []


def _job_id(kwargs: dict[str, Any]) -> Any:
    """The id of the job a signal is about: job_progress sends job_id, the others the job."""
    return kwargs["job"].pk if "job" in kwargs else uuid.UUID(str(kwargs["job_id"]))
