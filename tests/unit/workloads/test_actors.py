"""The example actors end to end on the StubBroker: ledger, retries, limits, and the work they do."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from typing import Any

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from dramatiq.brokers.stub import StubBroker

from apps.jobs import services
from apps.jobs.models import Job, JobAttempt
from apps.workloads import services as workloads_services
from apps.workloads.models import BatchItemResult, ExternalRecord, Report
from tests.unit.conftest import attempt_outcomes, run_all, run_job, start_worker, status_transitions
from tests.unit.workloads.conftest import SmtpServer, Source, closed_port

pytestmark = pytest.mark.django_db(transaction=True)

Status = Job.Status
Outcome = JobAttempt.Outcome


# --- probe: success, retries, permanent failures, time limits ------------------------------------------


def test_probe__succeeds_and_stores_its_result(stub_broker: StubBroker, stub_worker: dramatiq.Worker) -> None:
    # Given a submitted probe
    job = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 20})

    # When the worker runs it
    job = run_job(stub_broker, stub_worker, job)

    # Then the ledger holds its result after one attempt that succeeded
    assert job.status == Status.SUCCEEDED
    assert job.attempts == 1
    assert job.result["attempt"] == 1
    assert job.result["slept_ms"] >= 20
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.finished_at >= job.started_at
    assert job.last_error == ""
    assert attempt_outcomes(job) == [Outcome.SUCCEEDED]
    attempt = job.attempt_set.get()
    assert attempt.finished_at is not None
    assert attempt.duration_ms is not None
    assert attempt.error_class == ""
    assert status_transitions(job) == [Status.PENDING, Status.RUNNING, Status.SUCCEEDED]


def test_probe__transient_failures_are_retried_until_it_succeeds(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, signal_log: list[tuple[str, dict[str, Any]]]
) -> None:
    # Given a probe that fails its first two attempts
    job = services.job_submit(actor="jobs.probe", kwargs={"fail_attempts": 2})

    # When the worker runs it, retries included
    job = run_job(stub_broker, stub_worker, job)

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
    assert status_transitions(job) == [
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

    job = run_job(stub_broker, stub_worker, job)

    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert attempt_outcomes(job) == [Outcome.FAILED]
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

    job = run_job(stub_broker, stub_worker, job)

    # Then it fails for good after two attempts, keeping the last error and its traceback
    assert job.max_retries == 1
    assert job.status == Status.FAILED
    assert job.attempts == 2
    assert attempt_outcomes(job) == [Outcome.RETRIED, Outcome.FAILED]
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
        job = run_job(stub_broker, worker, job)
    finally:
        worker.stop()

    # Then it still gets its retry: two counted attempts after the interrupted one
    assert job.status == Status.FAILED
    assert (job.attempts, job.interruptions, job.counted_attempts) == (3, 1, 2)
    assert attempt_outcomes(job) == [Outcome.INTERRUPTED, Outcome.RETRIED, Outcome.FAILED]


def test_probe__hard_time_limit_stops_it(stub_broker: StubBroker, stub_worker: dramatiq.Worker) -> None:
    # Given a probe that would sleep 10 s under a 1.5 s hard limit
    job = services.job_submit(
        actor="jobs.probe",
        kwargs={"sleep_ms": 10_000},
        options={"time_limit": 1500, "soft_time_limit": 60_000, "max_retries": 0},
    )

    # When the worker runs it
    started = time.monotonic()
    job = run_job(stub_broker, stub_worker, job)
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
    job = run_job(stub_broker, stub_worker, job)
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

    job = run_job(stub_broker, stub_worker, job)

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

    job = run_job(stub_broker, stub_worker, job)

    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert job.attempt_set.get().error_class == "apps.jobs.exceptions.PermanentFailure"
    assert "not-an-address" in job.last_error
    assert mailoutbox == []


def test_send_email__unreachable_smtp_server_is_retried(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, settings: Any, mailoutbox: list[Any]
) -> None:
    # Given the SMTP backend pointed at a port nobody listens on (the worker reads settings per call)
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": closed_port(), "timeout": 2},
        }
    }
    job = services.job_submit(
        actor="jobs.send_email",
        kwargs={"to": "ada@example.com", "subject": "Hello", "body": "Body"},
        options={"max_retries": 1, "min_backoff": 100},
    )

    # When the worker runs it
    job = run_job(stub_broker, stub_worker, job)

    # Then the outage was treated as passing: retried, then failed when retries ran out
    assert job.attempts == 2
    assert attempt_outcomes(job) == [Outcome.RETRIED, Outcome.FAILED]
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
    job = run_job(stub_broker, stub_worker, job)
    assert job.status == Status.SUCCEEDED
    assert len(mailoutbox) == 1

    # When RabbitMQ delivers its message a second time
    stub_broker.enqueue(services.job_message(job))
    job = run_job(stub_broker, stub_worker, job)

    # Then the actor body did not run again and the ledger is unchanged
    assert len(mailoutbox) == 1
    assert job.status == Status.SUCCEEDED
    assert job.attempts == 1
    assert JobAttempt.objects.filter(job=job).count() == 1
    assert Job.objects.count() == 1


def test_send_email__greylisted_email_is_delivered_on_retry(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, smtp_server: SmtpServer
) -> None:
    # Given a mail server that defers the first delivery (greylisting)
    smtp_server.replies["RCPT"].append("450 4.2.0 Greylisted, try again later")
    job = services.job_submit(
        actor="jobs.send_email",
        kwargs={"to": "ada@example.com", "subject": "Hello", "body": "Body"},
        options={"max_retries": 2, "min_backoff": 100},
    )

    # When the worker runs the job
    job = run_job(stub_broker, stub_worker, job)

    # Then the deferral was retried and the second attempt delivered the email
    assert job.status == Status.SUCCEEDED, job.last_error
    assert attempt_outcomes(job) == [Outcome.RETRIED, Outcome.SUCCEEDED]
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

    job = run_job(stub_broker, stub_worker, job)

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
    job = run_job(stub_broker, stub_worker, job)

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
    again = workloads_services.batch_process(job_id=job.pk, items=items, operation="validate_email")

    # Then no item is recorded twice, and the counts are the same
    assert again == {"processed": 6, "succeeded": 3, "failed": 3}
    assert BatchItemResult.objects.filter(job=job).count() == 6


def test_process_batch__unknown_operation_fails_permanently(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    job = services.job_submit(actor="jobs.process_batch", kwargs={"items": [1], "operation": "explode"})

    job = run_job(stub_broker, stub_worker, job)

    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert "Unknown batch operation 'explode'" in job.last_error
    assert BatchItemResult.objects.count() == 0


def test_process_batch__soft_time_limit_stops_the_job_instead_of_failing_an_item(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch whose items take 50 ms each, 4 s of work under a 0.5 s soft limit
    def slow(item: Any) -> dict[str, Any]:
        time.sleep(0.05)
        return {"item": item}

    monkeypatch.setitem(workloads_services.BATCH_OPERATIONS, "slow", slow)
    job = services.job_submit(
        actor="jobs.process_batch",
        kwargs={"items": list(range(80)), "operation": "slow"},
        options={"time_limit": 10_000, "soft_time_limit": 500, "max_retries": 0},
    )

    # When the worker runs it
    started = time.monotonic()
    job = run_job(stub_broker, stub_worker, job)

    # Then the soft limit stopped the job long before its items were all done ...
    assert time.monotonic() - started < 3.5
    assert job.status == Status.FAILED
    assert job.attempt_set.get().error_class == "apps.jobs.exceptions.SoftTimeLimitExceeded"
    # ... and no item was recorded as failed by it: the items done before it succeeded
    results = BatchItemResult.objects.filter(job=job)
    assert not results.filter(outcome=BatchItemResult.Outcome.FAILED).exists()
    assert 0 < results.count() < 80


# --- sync_external_data against a real local HTTP server ----------------------------------------------------


def test_sync_external_data__upserts_and_a_second_run_updates(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, http_source: tuple[str, Source]
) -> None:
    base_url, source = http_source
    url = f"{base_url}/records.json"
    # Given a source with two records
    source.routes["/records.json"] = (200, [{"id": 1, "name": "one"}, {"id": "b", "name": "bee"}])

    # When the sync job runs
    first = services.job_submit(actor="jobs.sync_external_data", kwargs={"url": url})
    first = run_job(stub_broker, stub_worker, first)

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
    second = run_job(stub_broker, stub_worker, second)

    # Then existing records are updated in place, not duplicated
    assert second.status == Status.SUCCEEDED
    assert second.result == {"fetched": 3, "created": 1, "updated": 2}
    assert ExternalRecord.objects.count() == 3
    record = ExternalRecord.objects.get(external_id="1")
    assert record.data == {"id": 1, "name": "ONE"}
    assert record.last_synced_at > synced_before
    assert record.first_synced_at < record.last_synced_at
    assert source.requests == ["/records.json", "/records.json"]


def test_sync_external_data__permanent_answer_fails_the_job_at_once(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, http_source: tuple[str, Source]
) -> None:
    base_url, _source = http_source

    job = services.job_submit(actor="jobs.sync_external_data", kwargs={"url": f"{base_url}/missing.json"})
    job = run_job(stub_broker, stub_worker, job)

    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert "404" in job.last_error
