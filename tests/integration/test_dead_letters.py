"""The console's dead letters on the real RabbitMQ and PostgreSQL with a live worker: peek, requeue, purge."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.jobs import services
from apps.jobs.models import Job
from apps.jobs.services import dead_letters
from apps.workloads.models import Report
from tests.live import WorkerProcess, queue_messages, wait_for, wait_job

Status = Job.Status


def _dead(queue: str) -> int:
    return queue_messages(f"{queue}.XQ")


def _wait_dead(queue: str, count: int) -> None:
    wait_for(lambda: _dead(queue) == count, timeout=15, message=f"{queue}.XQ never held {count} messages")


def _failed_probe() -> Job:
    """A probe that fails for good at once: failed in the ledger, its message in default.XQ."""
    job = services.job_submit(actor="jobs.probe", kwargs={"permanent": True})
    job = wait_job(job.pk)
    assert job.status == Status.FAILED
    return job


def _messages(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def dead_worker(worker: WorkerProcess, broker: dramatiq.Broker) -> Iterator[WorkerProcess]:
    """The live worker, and every queue (.XQ included) emptied after the test as before it."""
    yield worker
    broker.flush_all()


@pytest.fixture
def superuser_client(django_user_model: Any) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def viewer_client(django_user_model: Any) -> Client:
    """A staff user who may look at jobs, but not requeue or purge dead letters."""
    user = django_user_model.objects.create_user("viewer", "viewer@example.com", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="jobs", codename="view_job"))
    client = Client()
    client.force_login(user)
    return client


def test_peek__shows_a_dead_letter_and_leaves_it_in_the_queue(
    dead_worker: WorkerProcess, superuser_client: Client
) -> None:
    # Given a job that failed for good, its message dead-lettered
    job = _failed_probe()
    _wait_dead("default", 1)

    # When it is peeked twice
    first = dead_letters.dead_letters_peek(queue="default")
    second = dead_letters.dead_letters_peek(queue="default")

    # Then both peeks show it, decoded and matched with the ledger, and it is still there
    assert [letter.message_id for letter in first] == [str(job.pk)]
    assert second == first
    letter = first[0]
    assert (letter.actor_name, letter.args, letter.kwargs) == ("jobs.probe", [], {"permanent": True})
    assert letter.job_status == Status.FAILED
    assert letter.job_attempts == 1
    assert "PermanentFailure" in letter.traceback and "fail permanently" in letter.error
    assert letter.reason == "rejected"
    assert letter.dead_lettered_at is not None and letter.enqueued_at is not None
    # (RabbitMQ's x-death time has whole seconds)
    assert letter.enqueued_at.replace(microsecond=0) <= letter.dead_lettered_at
    assert _dead("default") == 1
    assert dead_letters.dead_letter_counts()["default"] == 1

    # And the console lists the queue's count and the message, linked to its job
    overview = superuser_client.get(reverse("console:dead-letters"))
    assert overview.status_code == 200
    assert 'data-queue="default">1<' in overview.content.decode()
    page = superuser_client.get(reverse("console:dead-letters-queue", args=["default"]))
    assert page.status_code == 200
    html = page.content.decode()
    assert reverse("admin:jobs_job_change", args=[job.pk]) in html
    assert "jobs.probe" in html and "kwargs={&quot;permanent&quot;:true}" in html
    assert 'id="requeue-all"' in html and 'id="purge"' in html
    # (and reading the page took nothing away)
    assert _dead("default") == 1


def test_requeue__runs_the_job_again_as_a_linked_retry_and_removes_the_message(
    dead_worker: WorkerProcess, superuser_client: Client
) -> None:
    # Given a report job that failed for good (its report did not exist), its message dead-lettered
    report_id = 987_654
    job = wait_job(services.job_submit(actor="jobs.generate_report", args=[report_id]).pk)
    assert job.status == Status.FAILED and "does not exist" in job.last_error
    _wait_dead("reports", 1)
    # And the cause fixed: the report exists now (bulk_create sends no signal, so no job of its own)
    Report.objects.bulk_create([Report(pk=report_id, type=Report.Type.JOBS)])

    # When an operator requeues the message from the console
    response = superuser_client.post(
        reverse("console:dead-letters-requeue", args=["reports"]), {"message_id": str(job.pk)}
    )

    # Then a new job linked to the failed one runs it again, and succeeds in the live worker
    assert response.status_code == 302
    assert response["Location"] == reverse("console:dead-letters-queue", args=["reports"])
    retry = Job.objects.get(retry_of=job)
    assert _messages(response) == [f"Requeued message {job.pk}: it runs again as job {retry.pk}."]
    retry = wait_job(retry.pk, timeout=30)
    assert retry.status == Status.SUCCEEDED, retry.last_error
    assert (retry.source, retry.actor_name, retry.args) == (
        Job.Source.ADMIN,
        "jobs.generate_report",
        [report_id],
    )
    assert Report.objects.get(pk=report_id).file
    # And the dead letter is gone, the failed job keeps its history, and both jobs' admin history says so
    assert _dead("reports") == 0
    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert "retried as job" in LogEntry.objects.get(object_id=str(job.pk)).change_message
    assert str(job.pk) in LogEntry.objects.get(object_id=str(retry.pk)).change_message


def test_requeue__of_a_job_already_being_retried_leaves_the_message(
    dead_worker: WorkerProcess, superuser_client: Client
) -> None:
    # Given two failed jobs in default.XQ, and no worker for a moment, so that a retry stays queued
    first, second = _failed_probe(), _failed_probe()
    _wait_dead("default", 2)
    dead_worker.shutdown()
    try:
        # And the first already retried from its job page (that retry still waits for a worker)
        retry = services.job_retry(job_id=first.pk)

        # When an operator requeues its dead letter
        url = reverse("console:dead-letters-requeue", args=["default"])
        response = superuser_client.post(url, {"message_id": str(first.pk)})

        # Then nothing is retried a second time, the message stays, and the operator is told why
        assert response.status_code == 302
        [text] = _messages(response)
        assert text.startswith(f"Message {first.pk} was not requeued")
        assert f"already being retried as job {retry.pk}" in text
        assert Job.objects.filter(retry_of=first).count() == 1
        assert _dead("default") == 2

        # When they requeue all of default.XQ (after its confirmation page, which shows the count)
        confirm_url = reverse("console:dead-letters-requeue-all", args=["default"])
        confirmation = superuser_client.get(confirm_url)
        assert confirmation.status_code == 200
        assert "Requeue <strong>2</strong> messages" in confirmation.content.decode()
        response = superuser_client.post(confirm_url)

        # Then the second job is retried and the first's message is left, with the reason
        [text] = _messages(response)
        assert text.startswith("Requeued 1 message; skipped 1 (left in default.XQ):")
        assert "already being retried" in text
        assert Job.objects.filter(retry_of=second).count() == 1
        assert Job.objects.filter(retry_of=first).count() == 1
        assert [letter.message_id for letter in dead_letters.dead_letters_peek(queue="default")] == [
            str(first.pk)
        ]
    finally:
        dead_worker.start()

    # When the retries have run (and failed again, as permanent probes do)
    for job in Job.objects.filter(retry_of__in=[first, second]):
        assert wait_job(job.pk).status == Status.FAILED
    _wait_dead("default", 3)

    # Then the first's old dead letter is out of date: requeueing it would run the job twice
    with pytest.raises(dead_letters.DeadLetterNotRequeued, match="already retried as job"):
        dead_letters.dead_letter_requeue(queue="default", message_id=str(first.pk), requested_by=None)
    assert _dead("default") == 3
    assert Job.objects.filter(retry_of=first).count() == 1


def test_purge__after_confirmation_empties_the_dead_letter_queue(
    dead_worker: WorkerProcess, superuser_client: Client
) -> None:
    # Given two dead letters
    jobs = [_failed_probe(), _failed_probe()]
    _wait_dead("default", 2)
    url = reverse("console:dead-letters-purge", args=["default"])

    # When an operator opens the purge, the confirmation shows the count and purges nothing yet
    confirmation = superuser_client.get(url)
    assert confirmation.status_code == 200
    assert "Purge <strong>2</strong> messages" in confirmation.content.decode()
    assert _dead("default") == 2

    # And when they confirm
    response = superuser_client.post(url)

    # Then default.XQ is empty, the jobs stay failed, and each job's history records the purge
    assert response.status_code == 302
    assert _messages(response) == ["Purged 2 messages from default.XQ; their jobs stay failed."]
    assert _dead("default") == 0
    assert dead_letters.dead_letters_peek(queue="default") == []
    for job in jobs:
        job.refresh_from_db()
        assert job.status == Status.FAILED
        assert "Purged its dead letter" in LogEntry.objects.get(object_id=str(job.pk)).change_message


def test_permissions__a_viewer_sees_the_dead_letters_but_cannot_requeue_or_purge(
    dead_worker: WorkerProcess, viewer_client: Client
) -> None:
    job = _failed_probe()
    _wait_dead("default", 1)

    # A user who may view jobs sees the page, without the buttons
    page = viewer_client.get(reverse("console:dead-letters-queue", args=["default"]))
    assert page.status_code == 200
    html = page.content.decode()
    assert str(job.pk) in html
    assert 'value="Requeue"' not in html and 'id="requeue-all"' not in html and 'id="purge"' not in html

    # But every action is refused, and nothing changes
    posts = {
        "dead-letters-requeue": {"message_id": str(job.pk)},
        "dead-letters-requeue-all": {},
        "dead-letters-purge": {},
    }
    for name, data in posts.items():
        assert viewer_client.post(reverse(f"console:{name}", args=["default"]), data).status_code == 403, name
    assert viewer_client.get(reverse("console:dead-letters-purge", args=["default"])).status_code == 403
    assert _dead("default") == 1
    assert not Job.objects.filter(retry_of=job).exists()
    assert not LogEntry.objects.exists()
