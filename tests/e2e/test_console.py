"""The operations console in a real browser: what operators do every day, as they do it.

Find failed jobs and why they failed, retry (one, several, everything a filter matches), cancel,
edit-and-retry, the console's own pages (dashboard, workers, dead letters), what a viewer may not do,
and markup from a job that must never run. Every run also writes the pictures of README.md's
operator's guide to test-artifacts/e2e/console/.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pika
import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker
from playwright.sync_api import Locator, Page, expect

from apps.jobs.models import Job, JobAttempt, JobEvent, Worker
from apps.workloads.models import Report
from tests.e2e.conftest import log_in

XSS = "<script>window.__xss=1</script>"
JOB_LIST = "/admin/jobs/job/"
DASHBOARD = "/admin/console/dashboard/"
WORKERS = "/admin/console/workers/"
DEAD_LETTERS = "/admin/console/dead-letters/"
#: A queue of this test module's own, declared on the StubBroker and in RabbitMQ only while a test
#: uses it: other tiers count the real queues' dead letters, and may run at the same time.
DEAD_QUEUE = "e2e-console"

Status = Job.Status
Outcome = JobAttempt.Outcome
Screenshot = Callable[[Page, str], Path]
JobFactory = Callable[..., Job]

TRACEBACK = """Traceback (most recent call last):
  File "/app/.venv/lib/python3.12/site-packages/dramatiq/worker.py", line 515, in process_message
    res = actor(*message.args, **message.kwargs)
  File "/app/apps/workloads/actors.py", line 88, in process_batch
    return batch.process(items, operation)
  File "/app/apps/workloads/services/batch.py", line 41, in process
    address = item["email"]
KeyError: 'email'
"""
CONNECTION_TRACEBACK = """Traceback (most recent call last):
  File "/app/.venv/lib/python3.12/site-packages/dramatiq/worker.py", line 515, in process_message
    res = actor(*message.args, **message.kwargs)
  File "/app/apps/workloads/services/batch.py", line 29, in process
    crm.lookup(ids)
ConnectionError: crm.internal:443 timed out after 10 s
"""


def job_url(job: Job | Any) -> str:
    return f"/admin/jobs/job/{getattr(job, 'pk', job)}/change/"


def short(job: Job) -> str:
    return str(job.pk)[:8]


def at_job_page(page: Page, job: Job | Any) -> None:
    """The page is `job`'s page, rendered (not the server error page in its place)."""
    expect(page).to_have_url(re.compile(re.escape(job_url(job)) + r"(\?|$)"))
    expect(page.get_by_role("heading", name="Server Error (500)")).to_have_count(0)
    expect(status_badge(page)).to_be_visible()


def status_badge(page: Page) -> Locator:
    return page.locator(".field-status_display span.job-status")


def result_rows(page: Page) -> Locator:
    return page.locator("#result_list tbody tr")


def row_of(page: Page, job: Job) -> Locator:
    return result_rows(page).filter(has=page.locator("th a", has_text=short(job)))


def progress_cell(row: Locator) -> Locator:
    return row.locator("td[class*=field-progress]")


def shown_text(cell: Locator) -> str:
    """What a cell shows: its text, then in brackets any tooltip (title) in it, as the browser has them.

    The job list keeps a progress message in the bar's tooltip; a message written as text shows here
    too, so the assertions hold either way."""
    expect(cell).to_have_count(1)
    return cell.evaluate(
        """cell => {
            const text = cell.textContent.replace(/\\s+/g, " ").trim();
            const titles = [...cell.querySelectorAll("[title]")].map(e => e.title).join(" ");
            return titles ? `${text} (${titles})` : text;
        }"""
    )


def object_tools(page: Page) -> Locator:
    return page.locator(".object-tools")


def assert_no_injected_script(page: Page) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("[...document.scripts].filter(s => s.text.includes('__xss')).length") == 0


def ago(**delta: float) -> Any:
    return timezone.now() - timedelta(**delta)


def backdate(job: Job, **delta: float) -> Job:
    """Set created_at (auto_now_add) in the past, as if the job had been submitted then."""
    Job.objects.filter(pk=job.pk).update(created_at=ago(**delta))
    job.refresh_from_db()
    return job


def failed_job(job_factory: JobFactory, **fields: Any) -> Job:
    """A job that failed for good on its only attempt (max_retries 0), as the ledger records it."""
    started = ago(minutes=10)
    defaults: dict[str, Any] = {
        "actor_name": "jobs.probe",
        "status": Status.FAILED,
        "attempts": 1,
        "max_retries": 0,
        "started_at": started,
        "finished_at": started + timedelta(seconds=2),
        "last_error": "PermanentFailure: The probe was asked to fail permanently.",
        "last_traceback": "Traceback (most recent call last):\nPermanentFailure: asked to.\n",
    }
    job = job_factory(**{**defaults, **fields})
    JobAttempt.objects.create(
        job=job,
        number=1,
        worker_host="worker-a",
        worker_pid=4101,
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        duration_ms=2000,
        outcome=Outcome.FAILED,
        error_class=job.last_error.partition(":")[0],
        error_message=job.last_error.partition(": ")[2],
        traceback=job.last_traceback,
    )
    return job


def batch_failure(job_factory: JobFactory, requested_by: Any = None) -> Job:
    """A process_batch job that failed twice: a timeout (retried), then a KeyError (its last attempt)."""
    started = ago(minutes=14)
    job = job_factory(
        actor_name="jobs.process_batch",
        queue_name="batch",
        status=Status.FAILED,
        args=[],
        kwargs={"items": [{"id": 7}, {"id": 8, "email": "ops@example.com"}], "operation": "validate_email"},
        max_retries=1,
        attempts=2,
        progress_current=1,
        progress_total=2,
        progress_message="Validated 1 of 2 items",
        started_at=started,
        finished_at=started + timedelta(seconds=41),
        last_error="KeyError: 'email'",
        last_traceback=TRACEBACK,
        requested_by=requested_by,
        source=Job.Source.API,
        idempotency_key="nightly-import-2024-06-01",
    )
    JobAttempt.objects.create(
        job=job,
        number=1,
        worker_host="worker-a",
        worker_pid=4101,
        worker_id="worker-a:1717171717:4101:8812",
        started_at=started,
        finished_at=started + timedelta(seconds=10),
        duration_ms=10_004,
        outcome=Outcome.RETRIED,
        error_class="ConnectionError",
        error_message="crm.internal:443 timed out after 10 s",
        traceback=CONNECTION_TRACEBACK,
    )
    JobAttempt.objects.create(
        job=job,
        number=2,
        worker_host="worker-b",
        worker_pid=5230,
        worker_id="worker-b:1717171717:5230:9120",
        started_at=started + timedelta(seconds=40),
        finished_at=started + timedelta(seconds=41),
        duration_ms=1_180,
        outcome=Outcome.FAILED,
        error_class="KeyError",
        error_message="'email'",
        traceback=TRACEBACK,
    )
    for seconds, from_status, to_status, attempt, note in [
        (-60, "", Status.PENDING, 0, ""),
        (-60, Status.PENDING, Status.QUEUED, 0, ""),
        (0, Status.QUEUED, Status.RUNNING, 1, ""),
        (10, Status.RUNNING, Status.RETRYING, 1, "ConnectionError"),
        (40, Status.RETRYING, Status.RUNNING, 2, ""),
        (41, Status.RUNNING, Status.FAILED, 2, "KeyError"),
    ]:
        event = JobEvent.objects.create(
            job=job, from_status=from_status, to_status=to_status, attempt=attempt, note=note
        )
        JobEvent.objects.filter(pk=event.pk).update(at=started + timedelta(seconds=seconds))  # auto_now_add
    return backdate(job, minutes=15)


def showcase_jobs(job_factory: JobFactory, user: Any) -> dict[str, Job]:
    """A dozen jobs as a busy hour leaves them: every status, several actors, two with progress."""

    def finished(minutes: float, seconds: float, **fields: Any) -> Job:
        end = ago(minutes=minutes)
        job = job_factory(started_at=end - timedelta(seconds=seconds), finished_at=end, **fields)
        return backdate(job, minutes=minutes, seconds=seconds + 1)

    def active(minutes: float, **fields: Any) -> Job:
        started = ago(minutes=minutes) + timedelta(seconds=2)
        job = job_factory(started_at=started if fields.get("attempts") else None, **fields)
        return backdate(job, minutes=minutes)

    email = {"actor_name": "jobs.send_email", "queue_name": "emails", "max_retries": 8}
    report = {"actor_name": "jobs.generate_report", "queue_name": "reports"}
    batch = {"actor_name": "jobs.process_batch", "queue_name": "batch"}
    welcome = {"to": ["ana@example.com"], "subject": "Welcome aboard", "body": "Hello Ana"}
    return {
        "report_running": active(
            1,
            **report,
            status=Status.RUNNING,
            attempts=1,
            args=[118],
            progress_current=4_200,
            progress_total=10_000,
            progress_message="Writing rows 4,001-5,000",
            requested_by=user,
            source=Job.Source.TRIGGER,
        ),
        "batch_running": active(
            2,
            **batch,
            status=Status.RUNNING,
            attempts=1,
            kwargs={"items": list(range(1000)), "operation": "validate_email"},
            progress_current=350,
            progress_total=1_000,
            progress_message="Validated 350 of 1,000 items",
            source=Job.Source.API,
        ),
        "email_queued": active(3, **email, status=Status.QUEUED, kwargs=welcome, source=Job.Source.API),
        "email_retrying": active(
            5,
            **email,
            status=Status.RETRYING,
            attempts=2,
            kwargs={**welcome, "to": ["bo@example.org"]},
            next_retry_at=timezone.now() + timedelta(seconds=40),
            last_error="SMTPServerDisconnected: Connection unexpectedly closed",
            source=Job.Source.API,
        ),
        "email_sent": finished(7, 0.82, **email, status=Status.SUCCEEDED, attempts=1, kwargs=welcome),
        "batch_failed": backdate(
            failed_job(
                job_factory,
                **batch,
                max_retries=3,
                attempts=4,
                last_error="KeyError: 'email'",
                last_traceback=TRACEBACK,
                requested_by=user,
                source=Job.Source.API,
            ),
            minutes=11,
        ),
        "report_done": finished(
            16, 42.5, **report, status=Status.SUCCEEDED, attempts=1, args=[117], result={"rows": 10_000}
        ),
        "probe_failed": backdate(
            failed_job(job_factory, kwargs={"permanent": True}, source=Job.Source.ADMIN), minutes=20
        ),
        "sessions_cleaned": finished(
            25,
            3.1,
            actor_name="jobs.cleanup_expired_sessions",
            status=Status.SUCCEEDED,
            attempts=1,
            source=Job.Source.SCHEDULE,
        ),
        "email_cancelled": finished(
            31, 0, **email, status=Status.CANCELLED, kwargs=welcome, requested_by=user
        ),
        "sync_done": finished(
            45, 12.4, actor_name="jobs.sync_external_data", status=Status.SUCCEEDED, attempts=2
        ),
        "sync_skipped": finished(
            58, 0, actor_name="jobs.sync_external_data", status=Status.SKIPPED, source=Job.Source.SCHEDULE
        ),
    }


def ensure_roles() -> None:
    """The groups of migration 0007 as it makes them: live_server's transactional tests empty every
    table after each test (the permissions come back with post_migrate, the groups do not)."""
    roles = importlib.import_module("apps.jobs.migrations.0007_console_roles").ROLES
    for name, codenames in roles.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames)
        )


def staff_user(username: str, group: str) -> Any:
    from django.contrib.auth import get_user_model

    ensure_roles()
    user = get_user_model().objects.create_user(username, f"{username}@example.com", "pw-" + username)
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name=group))
    return user


def pick_action(page: Page, label: str) -> None:
    page.locator("select[name=action]").select_option(label=label)
    page.locator("#changelist-form button[name=index]").click()  # "Run" (Django 6), "Go" before


# --- Finding jobs ------------------------------------------------------------------------------------


def test_job_list__filter_failed_then_search_by_id_prefix(
    admin_page: Page, job_factory: JobFactory, admin_user: Any, screenshot: Screenshot
) -> None:
    # Given a busy hour's jobs
    jobs = showcase_jobs(job_factory, admin_user)
    admin_page.goto(JOB_LIST)
    expect(result_rows(admin_page)).to_have_count(len(jobs))
    # (each running job with its progress bar and message)
    running = row_of(admin_page, jobs["report_running"])
    expect(running.locator("progress.job-progress")).to_have_attribute("value", "42")
    assert shown_text(progress_cell(running)) == "42% (4200 of 10000 Writing rows 4,001-5,000)"
    screenshot(admin_page, "job-list")

    # When the operator keeps only the failed jobs
    admin_page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()

    # Then the two failed jobs remain
    expect(admin_page).to_have_url(re.compile(r"[?&]status__exact=failed\b"))
    rows = result_rows(admin_page)
    expect(rows).to_have_count(2)
    expect(rows.locator("span.job-status-failed")).to_have_count(2)

    # When they search for the first 8 characters of one job's id (as the list shows it)
    wanted = jobs["batch_failed"]
    admin_page.locator("#searchbar").fill(short(wanted))
    admin_page.locator("#searchbar").press("Enter")

    # Then that job is the only row, still among the failed ones, and its link opens it
    expect(admin_page).to_have_url(re.compile(r"status__exact=failed"))
    expect(rows).to_have_count(1)
    expect(rows.locator("th a")).to_have_text(short(wanted))
    rows.locator("th a").click()
    at_job_page(admin_page, wanted)
    expect(status_badge(admin_page)).to_have_text("Failed")


def test_job_list__search_finds_failed_jobs_by_error_text_and_jobs_by_actor(
    admin_page: Page, job_factory: JobFactory, admin_user: Any
) -> None:
    # Given the busy hour's jobs
    jobs = showcase_jobs(job_factory, admin_user)
    admin_page.goto(JOB_LIST)
    search = admin_page.locator("#searchbar")

    # When the operator searches for words of an error, then only the failed or retrying job with it shows
    search.fill("unexpectedly closed")
    search.press("Enter")
    expect(result_rows(admin_page)).to_have_count(1)
    expect(row_of(admin_page, jobs["email_retrying"])).to_have_count(1)

    # And an actor's name (without the "jobs." prefix) finds all its jobs
    search.fill("send_email")
    search.press("Enter")
    expect(result_rows(admin_page)).to_have_count(4)
    expect(result_rows(admin_page).locator("td.field-actor")).to_have_text(["send_email"] * 4)


# --- Why a job failed, and running it again --------------------------------------------------------------


def test_job_page__shows_why_a_failed_job_failed(
    admin_page: Page, job_factory: JobFactory, admin_user: Any, screenshot: Screenshot
) -> None:
    # Given a batch that failed on both its attempts, for different reasons
    job = batch_failure(job_factory, requested_by=admin_user)

    # When the operator opens it
    admin_page.goto(job_url(job))

    # Then the summary says it failed, after how many attempts, with the last error
    expect(status_badge(admin_page)).to_have_text("Failed")
    expect(admin_page.locator(".field-attempts_display .readonly")).to_have_text("2 / 2")
    expect(admin_page.locator(".field-error_display pre")).to_have_text("KeyError: 'email'")
    # ... the traceback of the last attempt ...
    expect(admin_page.locator(".field-traceback_display")).to_contain_text('address = item["email"]')
    # ... each attempt with its own error, its traceback one click away ...
    attempts = admin_page.locator("#attempt_set-group tbody tr.has_original")
    expect(attempts).to_have_count(2)
    expect(attempts.locator("td.field-outcome")).to_have_text(["Failed, retried", "Failed"])
    expect(attempts.locator("td.field-worker_host")).to_have_text(["worker-a", "worker-b"])
    first_error = attempts.nth(0).locator("td.field-error details")
    expect(first_error.locator("summary")).to_have_text(
        "ConnectionError: crm.internal:443 timed out after 10 s"
    )
    first_error.locator("summary").click()
    expect(first_error.locator("pre")).to_contain_text("crm.lookup(ids)")
    # ... and every status it went through
    events = admin_page.locator("#events-group tbody tr.has_original")
    expect(events.locator("td.field-to_status")).to_have_text(
        ["Pending", "Queued", "Running", "Retrying", "Running", "Failed"]
    )
    # And an operator can act on it
    expect(object_tools(admin_page).get_by_role("button", name="Retry")).to_be_visible()
    expect(object_tools(admin_page).get_by_role("link", name="Edit and retry")).to_be_visible()
    expect(object_tools(admin_page).get_by_role("button", name="Cancel")).to_have_count(0)
    screenshot(admin_page, "job-page-failed")


def test_job_page__retry_runs_the_job_again_and_it_succeeds(
    admin_page: Page, job_factory: JobFactory, run_jobs: Callable[[], None]
) -> None:
    # Given a probe that failed
    job = failed_job(job_factory, kwargs={"sleep_ms": 0})
    admin_page.goto(job_url(job))

    # When the operator retries it from its page
    object_tools(admin_page).get_by_role("button", name="Retry").click()

    # Then they are on the new job's page: queued, a retry of the failed one, same arguments
    again = Job.objects.get(retry_of=job)
    at_job_page(admin_page, again)
    expect(admin_page.locator(".messagelist .success")).to_have_text(
        f"Job {short(job)} runs again as this new job."
    )
    expect(status_badge(admin_page)).to_have_text(re.compile(r"Pending|Queued"))
    expect(admin_page.locator(".field-related_links a")).to_have_text(f"job {short(job)}")
    expect(admin_page.locator(".field-kwargs_display pre")).to_contain_text('"sleep_ms": 0')
    assert again.source == Job.Source.ADMIN
    job.refresh_from_db()
    assert job.status == Status.FAILED  # the failed job and its history stay as they were

    # When a worker runs it (the real actor, through the ledger, on the StubBroker)
    run_jobs()

    # Then its page, which follows the job live, shows it succeeded (reloaded by the event stream)
    expect(status_badge(admin_page)).to_have_text("Succeeded")
    again.refresh_from_db()
    assert again.status == Status.SUCCEEDED
    expect(admin_page.locator(".field-attempts_display .readonly")).to_have_text("1 / 6")

    # And the failed job's page links to its retry, and its History says who retried it
    admin_page.goto(job_url(job))
    at_job_page(admin_page, job)
    expect(admin_page.locator(".field-related_links")).to_contain_text(f"retried as job {short(again)}")
    expect(admin_page.locator(".field-related_links span.job-status-succeeded")).to_be_visible()
    admin_page.get_by_role("link", name="History").click()
    history = admin_page.locator("#change-history tbody tr")
    expect(history).to_have_count(1)
    expect(history).to_contain_text("admin")
    expect(history).to_contain_text(f"Retried (failed) as job {again.pk}.")


def test_job_list__retry_selected_retries_the_two_failed_jobs(
    admin_page: Page, job_factory: JobFactory
) -> None:
    # Given two failed jobs and a succeeded one
    failed = [
        failed_job(job_factory),
        failed_job(job_factory, actor_name="jobs.send_email", queue_name="emails"),
    ]
    done = job_factory(status=Status.SUCCEEDED)
    admin_page.goto(JOB_LIST)

    # When the operator ticks the two failed jobs and runs "Retry selected"
    for job in failed:
        row_of(admin_page, job).locator("input.action-select").check()
    expect(admin_page.locator(".action-counter")).to_contain_text("2 of 3 selected")
    pick_action(admin_page, "Retry selected failed or cancelled jobs")

    # Then the list says both run again, and shows the two new jobs
    expect(admin_page.locator(".messagelist .success")).to_have_text("2 jobs run again.")
    retries = Job.objects.filter(retry_of__in=failed)
    assert sorted(str(retry.retry_of_id) for retry in retries) == sorted(str(job.pk) for job in failed)
    assert not Job.objects.filter(retry_of=done).exists()
    expect(result_rows(admin_page)).to_have_count(5)
    for retry in retries:
        expect(row_of(admin_page, retry).locator("span.job-status")).to_have_text(
            re.compile(r"Pending|Queued")
        )


def test_job_list__retry_every_job_matching_the_filter_after_a_confirmation(
    admin_page: Page, job_factory: JobFactory
) -> None:
    # Given more failed jobs than one page of the list shows, and a queued one
    Job.objects.bulk_create(
        Job(actor_name="jobs.probe", queue_name="default", status=Status.FAILED, kwargs={"n": n})
        for n in range(55)
    )
    job_factory(status=Status.QUEUED)
    admin_page.goto(JOB_LIST + "?status__exact=failed")
    expect(result_rows(admin_page)).to_have_count(50)

    # When the operator selects the page, then every job matching the filter, and retries them
    admin_page.locator("#action-toggle").check()
    admin_page.locator(".actions .question").get_by_role("button", name="Select all 55 jobs").click()
    pick_action(admin_page, "Retry selected failed or cancelled jobs")

    # Then a page asks first, with the count
    expect(admin_page.locator("#bulk-count")).to_contain_text("This will retry 55 jobs")
    assert not Job.objects.filter(retry_of__isnull=False).exists()

    # And once confirmed, all of them run again
    admin_page.get_by_role("button", name="Yes, retry 55 jobs").click()
    expect(admin_page.locator(".messagelist .success")).to_have_text("55 jobs run again.")
    assert Job.objects.filter(retry_of__isnull=False).count() == 55


def test_job_page__cancel_a_queued_job(admin_page: Page, job_factory: JobFactory) -> None:
    # Given a queued email
    job = job_factory(actor_name="jobs.send_email", queue_name="emails", status=Status.QUEUED)
    admin_page.goto(job_url(job))
    expect(status_badge(admin_page)).to_have_text("Queued")
    expect(object_tools(admin_page).get_by_role("button", name="Retry")).to_have_count(0)

    # When the operator cancels it from its page
    object_tools(admin_page).get_by_role("button", name="Cancel").click()

    # Then the page shows it cancelled, with no Cancel button any more
    at_job_page(admin_page, job)
    expect(admin_page.locator(".messagelist .success")).to_have_text(
        "The job is cancelled; it will not start."
    )
    expect(status_badge(admin_page)).to_have_text("Cancelled")
    expect(object_tools(admin_page).get_by_role("button", name="Cancel")).to_have_count(0)
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    # And its History says who cancelled it, from which status
    admin_page.get_by_role("link", name="History").click()
    expect(admin_page.locator("#change-history tbody tr")).to_contain_text("Cancelled (was queued).")


def test_job_page__edit_and_retry_runs_the_job_with_the_edited_kwargs(
    admin_page: Page, job_factory: JobFactory
) -> None:
    # Given a probe that failed with the arguments it was given
    job = failed_job(job_factory, kwargs={"sleep_ms": 90_000, "permanent": True})
    admin_page.goto(job_url(job))

    # When the operator opens "Edit and retry", the form holds the job's arguments
    object_tools(admin_page).get_by_role("link", name="Edit and retry").click()
    kwargs = admin_page.get_by_label("kwargs")
    assert json.loads(kwargs.input_value()) == {"sleep_ms": 90_000, "permanent": True}

    # And arguments that are not valid JSON, or that the actor refuses, are sent back with the reason
    kwargs.fill("{sleep_ms: 10}")
    admin_page.get_by_role("button", name="Retry with these arguments").click()
    expect(admin_page.locator("#edit-and-retry .errorlist")).to_contain_text("Not valid JSON")
    admin_page.get_by_label("kwargs").fill('{"sleep_ms": -1}')
    admin_page.get_by_role("button", name="Retry with these arguments").click()
    expect(admin_page.locator("#edit-and-retry .errorlist")).to_contain_text("kwargs.sleep_ms")
    assert not Job.objects.filter(retry_of=job).exists()

    # When they change the kwargs and submit
    admin_page.get_by_label("kwargs").fill('{"sleep_ms": 250}')
    admin_page.get_by_role("button", name="Retry with these arguments").click()

    # Then the new job's page shows the edited kwargs; the failed job keeps its own
    again = Job.objects.get(retry_of=job)
    assert again.kwargs == {"sleep_ms": 250}
    at_job_page(admin_page, again)
    expect(admin_page.locator(".messagelist .success")).to_have_text(
        "The job runs again with the edited arguments."
    )
    expect(admin_page.locator(".field-kwargs_display pre")).to_have_text(
        json.dumps({"sleep_ms": 250}, indent=2)
    )
    job.refresh_from_db()
    assert job.kwargs == {"sleep_ms": 90_000, "permanent": True}


def test_job_list__delete_finished_jobs_before_a_day(admin_page: Page, job_factory: JobFactory) -> None:
    # Given jobs that finished last month, one that finished today, and an old one still queued
    old = timezone.now() - timedelta(days=40)
    for status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED):
        job_factory(status=status, finished_at=old)
    today = job_factory(status=Status.SUCCEEDED, finished_at=timezone.now())
    waiting = backdate(job_factory(status=Status.QUEUED), days=40)
    admin_page.goto(JOB_LIST)

    # When the operator asks to delete the jobs finished before a week ago
    object_tools(admin_page).get_by_role("link", name="Delete finished jobs…").click()
    admin_page.get_by_label("Finished before").fill(f"{timezone.now() - timedelta(days=7):%Y-%m-%d}")
    admin_page.get_by_role("button", name="Count the jobs to delete").click()

    # Then they see the count first, and once confirmed only those are gone
    expect(admin_page.locator("#delete-count")).to_contain_text("This deletes 3 finished jobs")
    admin_page.get_by_role("button", name="Yes, delete 3 jobs").click()
    expect(admin_page.locator(".messagelist .success")).to_have_text("Deleted 3 finished jobs.")
    assert set(Job.objects.values_list("pk", flat=True)) == {today.pk, waiting.pk}


def test_report_page__lists_its_jobs_with_run_again(admin_page: Page, admin_user: Any) -> None:
    # Given a report whose job failed (saving the report submitted it)
    report = Report.objects.create(type=Report.Type.USERS, created_by=admin_user)
    job = Job.objects.get()
    Job.objects.filter(pk=job.pk).update(status=Status.FAILED, finished_at=timezone.now(), last_error="Boom")

    # When the operator opens the report, its jobs are listed with a "Run again" button
    admin_page.goto(f"/admin/workloads/report/{report.pk}/change/")
    jobs = admin_page.locator("#triggered-jobs tbody tr")
    expect(jobs).to_have_count(1)
    expect(jobs.locator("span.job-status-failed")).to_have_text("Failed")

    # When they run it again
    jobs.get_by_role("button", name="Run again").click()

    # Then the report's page says so and lists the new job first (and the report itself was not saved)
    expect(admin_page).to_have_url(re.compile(rf"/admin/workloads/report/{report.pk}/change/$"))
    expect(admin_page.locator(".messagelist .success")).to_contain_text(
        "Running jobs.generate_report again as job"
    )
    again = Job.objects.get(retry_of=job)
    expect(admin_page.locator(".messagelist .success")).to_have_text(
        f"Running jobs.generate_report again as job {short(again)}."
    )
    expect(jobs).to_have_count(2)
    expect(jobs.first.locator("a")).to_have_text(short(again))
    assert again.trigger == report


# --- The console's pages ------------------------------------------------------------------------------


def test_admin_index__has_the_operations_console_box_linking_its_pages(admin_page: Page) -> None:
    # Given the admin index, where operators land after signing in
    admin_page.goto("/admin/")

    # Then a box links the console's pages, and each opens with its title
    box = admin_page.locator("#console-links")
    expect(box.locator("caption")).to_have_text("Operations console")
    for link, title in [("Dashboard", "Dashboard"), ("Workers", "Workers"), ("Dead letters", "Dead letters")]:
        box.get_by_role("link", name=link, exact=True).click()
        expect(admin_page.locator("#content h1")).to_have_text(title)
        admin_page.go_back()
    box.get_by_role("link", name="Failed jobs").click()
    expect(admin_page).to_have_url(re.compile(r"/admin/jobs/job/\?status__exact=failed$"))


def test_dashboard__shows_queues_throughput_and_actors(
    admin_page: Page, job_factory: JobFactory, admin_user: Any, screenshot: Screenshot
) -> None:
    # Given an hour of jobs: the showcase, and a steady stream of finished emails and batches
    showcase_jobs(job_factory, admin_user)
    now = timezone.now()
    finished = []
    for n in range(60):
        end = now - timedelta(minutes=n * 0.95, seconds=7)
        failed = n % 11 == 3
        actor, queue = ("jobs.send_email", "emails") if n % 3 else ("jobs.process_batch", "batch")
        finished.append(
            Job(
                actor_name=actor,
                queue_name=queue,
                status=Status.FAILED if failed else Status.SUCCEEDED,
                attempts=1,
                started_at=end - timedelta(milliseconds=400 + 37 * n if n % 3 else 4_000 + 211 * n),
                finished_at=end,
            )
        )
    Job.objects.bulk_create(finished)

    # When the operator opens the dashboard
    response = admin_page.goto(DASHBOARD)

    # Then it shows its title, every queue, the chart and the busiest actors first
    assert response is not None and response.status == 200
    expect(admin_page.locator("#content h1")).to_have_text("Dashboard")
    queues = admin_page.locator("section[aria-labelledby=dash-queues] tbody th")
    expect(queues).to_contain_text(["batch", "default", "emails", "reports"])
    expect(admin_page.locator("svg.dash-chart")).to_be_visible()
    actors = admin_page.locator("table.dash-actors tbody th")
    expect(actors.first).to_have_text("jobs.send_email")
    screenshot(admin_page, "dashboard")


def test_workers__lists_workers_stale_ones_first(admin_page: Page, screenshot: Screenshot) -> None:
    # Given two live workers, one that stopped sending heartbeats, and one that stopped cleanly
    now = timezone.now()
    for host, pid, queues, seen_s, stopped in [
        ("worker-a", 4101, ["batch", "default"], 4, False),
        ("worker-b", 5230, ["emails", "reports"], 9, False),
        ("worker-c", 6077, ["batch", "default"], 420, False),
        ("worker-d", 3120, ["emails"], 3_000, True),
    ]:
        Worker.objects.create(
            worker_id=f"{host}:1717171717:{pid}:9911",
            host=host,
            pid=pid,
            queues=queues,
            threads=8,
            started_at=now - timedelta(hours=5, minutes=pid % 60),
            last_seen_at=now - timedelta(seconds=seen_s),
            jobs_in_progress=0 if stopped or host == "worker-b" else 3,
            stopped_at=now - timedelta(seconds=seen_s) if stopped else None,
        )

    # When the operator opens the workers page
    admin_page.goto(WORKERS)

    # Then the stale worker comes first, marked stale, then the running ones, then the stopped one
    expect(admin_page.locator("#content h1")).to_have_text("Workers")
    rows = admin_page.locator("#workers tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.locator("td:nth-child(2)")).to_have_text(["worker-c", "worker-a", "worker-b", "worker-d"])
    expect(rows.locator(".worker-state")).to_have_text(["stale", "running", "running", "stopped"])
    expect(admin_page.locator("#content-main")).to_contain_text("2 running, 1 stale, 1 stopped.")
    screenshot(admin_page, "workers")


@pytest.fixture
def dead_queue(stub_broker: StubBroker) -> Iterator[Callable[..., None]]:
    """DEAD_QUEUE on the StubBroker (so the console knows it) and in RabbitMQ as Dramatiq declares
    a queue (its .XQ takes its rejected messages); `dead_letter(job)` dead-letters the job's message
    the way RabbitMQ does. Both queues are deleted afterwards, and the StubBroker forgets them."""
    from django.conf import settings

    from apps.jobs.services import job_message

    stub_broker.declare_queue(DEAD_QUEUE)
    try:
        connection = pika.BlockingConnection(pika.URLParameters(settings.RABBITMQ_URL))
    except pika.exceptions.AMQPError as exc:
        pytest.fail(f"RabbitMQ at {settings.RABBITMQ_URL} is unreachable: {exc!r}", pytrace=False)
    channel = connection.channel()
    channel.queue_declare(queue=f"{DEAD_QUEUE}.XQ", durable=True)
    channel.queue_declare(
        queue=DEAD_QUEUE,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{DEAD_QUEUE}.XQ"},
    )

    def dead_letter(job: Job) -> None:
        body = job_message(job).encode()
        channel.basic_publish(exchange="", routing_key=DEAD_QUEUE, body=body)
        method, _, _ = channel.basic_get(queue=DEAD_QUEUE)
        assert method is not None
        channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)

    yield dead_letter
    for queue in (DEAD_QUEUE, f"{DEAD_QUEUE}.XQ"):
        channel.queue_delete(queue=queue)
    connection.close()
    for queue in (DEAD_QUEUE, f"{DEAD_QUEUE}.DQ"):
        stub_broker.queues.pop(queue, None)
    stub_broker.delay_queues.discard(f"{DEAD_QUEUE}.DQ")


def test_dead_letters__overview_and_a_queue_with_a_dead_letter_requeued(
    admin_page: Page,
    job_factory: JobFactory,
    dead_queue: Callable[[Job], None],
    screenshot: Screenshot,
) -> None:
    # Given a job that failed for good, its message dead-lettered by RabbitMQ
    job = batch_failure(job_factory)
    Job.objects.filter(pk=job.pk).update(queue_name=DEAD_QUEUE)
    job.refresh_from_db()
    dead_queue(job)

    # When the operator opens the dead letters
    response = admin_page.goto(DEAD_LETTERS)

    # Then every queue is listed with its dead-letter count
    assert response is not None and response.status == 200
    expect(admin_page.locator("#content h1")).to_have_text("Dead letters")
    queues = admin_page.locator("#dead-letter-queues tbody th a")
    expect(queues).to_contain_text(["batch", "default", "emails", "reports"])
    expect(admin_page.locator(f'td.dead-letter-count[data-queue="{DEAD_QUEUE}"]')).to_have_text("1")
    screenshot(admin_page, "dead-letters")

    # When they open the queue, they see the message: its job, error and attempts, left in place
    queues.get_by_text(DEAD_QUEUE, exact=True).click()
    expect(admin_page.locator("#content h1")).to_have_text(f"Dead letters of {DEAD_QUEUE}")
    letter = admin_page.locator("#dead-letters tr.dead-letter")
    expect(letter).to_have_count(1)
    expect(letter.locator("a code")).to_have_text(str(job.pk))
    expect(letter).to_contain_text("jobs.process_batch")
    expect(letter).to_contain_text("KeyError: 'email'")
    expect(letter.locator("span.job-status-failed")).to_have_text("Failed")
    expect(letter).to_contain_text("rejected")
    screenshot(admin_page, "dead-letters-queue")

    # When they requeue it, its job runs again as a new job, and the message leaves the queue
    letter.get_by_role("button", name="Requeue").click()
    again = Job.objects.get(retry_of=job)
    expect(admin_page.locator(".messagelist .success")).to_have_text(
        f"Requeued message {job.pk}: it runs again as job {again.pk}."
    )
    expect(admin_page.locator("#dead-letters tr.dead-letter")).to_have_count(0)
    expect(admin_page.locator("#dead-letter-count")).to_contain_text("0 messages")


def test_console_pages__say_so_when_rabbitmq_is_unreachable(
    admin_page: Page, settings: Any, allow_error_status: Callable[[int, str], None]
) -> None:
    # Given RabbitMQ does not answer (nothing listens on port 1)
    settings.RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:1/%2F"
    allow_error_status(503, r"/admin/console/dead-letters/")

    # When the operator opens the dead letters, then the page explains, with the counts unknown
    response = admin_page.goto(DEAD_LETTERS)
    assert response is not None and response.status == 503
    expect(admin_page.locator("#content h1")).to_have_text("Dead letters")
    expect(admin_page.locator(".messagelist .error")).to_contain_text("RabbitMQ is unreachable")
    expect(admin_page.locator("td.dead-letter-count").first).to_have_text("unknown")

    # And the dashboard still shows what the ledger knows
    response = admin_page.goto(DASHBOARD)
    assert response is not None and response.status == 200
    expect(admin_page.locator(".dash-broker-error")).to_contain_text("RabbitMQ did not answer")


def test_console_pages__show_the_admin_breadcrumbs_bar(admin_page: Page, job_factory: JobFactory) -> None:
    # Given the breadcrumbs bar as the admin's own pages draw it (Django 6 styles ol.breadcrumbs)
    job = failed_job(job_factory)
    admin_page.goto(JOB_LIST)
    style = "e => getComputedStyle(e).backgroundColor"
    expected = admin_page.locator(".breadcrumbs").evaluate(style)
    assert expected not in ("", "rgba(0, 0, 0, 0)")

    # When the operator opens each of the console's pages, then each has the same bar
    pages = {
        "job page": job_url(job),
        "dashboard": DASHBOARD,
        "workers": WORKERS,
        "dead letters": DEAD_LETTERS,
        "edit and retry": f"/admin/jobs/job/{job.pk}/edit-and-retry/",
        "delete finished jobs": "/admin/jobs/job/delete-finished/",
    }
    unstyled = []
    for name, url in pages.items():
        admin_page.goto(url)
        breadcrumbs = admin_page.locator(".breadcrumbs")
        expect(breadcrumbs).to_contain_text("Home")
        if breadcrumbs.evaluate(style) != expected:
            unstyled.append(f"{name} ({url}): <{breadcrumbs.evaluate('e => e.tagName.toLowerCase()')}>")
    assert not unstyled, "Breadcrumbs without the admin's bar (a <div>, not Django 6's <ol>): " + ", ".join(
        unstyled
    )


# --- Safety: markup from jobs, and what viewers may do -----------------------------------------------------


def test_job_list_and_page__render_markup_from_a_job_as_text(
    admin_page: Page, job_factory: JobFactory
) -> None:
    # Given a job whose kwargs, error and progress message carry a script (from an API user, or echoed)
    job = job_factory(
        status=Status.FAILED,
        kwargs={"note": XSS},
        last_error=XSS,
        progress_current=3,
        progress_total=10,
        progress_message=XSS,
    )

    # When the operator lists the jobs, then the script shows as text and never runs
    admin_page.goto(JOB_LIST)
    assert shown_text(progress_cell(row_of(admin_page, job))) == f"30% (3 of 10 {XSS})"
    assert_no_injected_script(admin_page)

    # And the same on the job's page
    admin_page.goto(job_url(job))
    expect(admin_page.locator(".field-kwargs_display pre")).to_contain_text(f'"note": "{XSS}"')
    expect(admin_page.locator(".field-error_display pre")).to_have_text(XSS)
    expect(admin_page.locator(".field-progress_display .readonly")).to_have_text(f"30% {XSS}")
    assert_no_injected_script(admin_page)


def test_viewer__sees_jobs_without_retry_or_cancel(page: Page, job_factory: JobFactory) -> None:
    # Given a member of "viewers", a failed job and a queued one
    staff_user("vera", "viewers")
    failed = failed_job(job_factory)
    queued = job_factory(status=Status.QUEUED)

    # When she signs in through the login form
    log_in(page, "vera", "pw-vera")

    # Then she sees the failed job's page without Retry or Edit and retry ...
    page.goto(job_url(failed))
    expect(status_badge(page)).to_have_text("Failed")
    expect(object_tools(page).get_by_role("button", name="Retry")).to_have_count(0)
    expect(object_tools(page).get_by_role("link", name="Edit and retry")).to_have_count(0)
    # ... the queued job's page without Cancel ...
    page.goto(job_url(queued))
    expect(status_badge(page)).to_have_text("Queued")
    expect(object_tools(page).get_by_role("button", name="Cancel")).to_have_count(0)
    # ... a list without the retry and cancel actions ...
    page.goto(JOB_LIST)
    expect(result_rows(page)).to_have_count(2)
    expect(page.locator("select[name=action] option", has_text="Retry selected")).to_have_count(0)
    expect(page.locator("select[name=action] option", has_text="Cancel selected")).to_have_count(0)
    # ... and a retry posted by hand is refused
    token = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "csrftoken")
    refused = page.request.post(f"/admin/jobs/job/{failed.pk}/retry/", headers={"X-CSRFToken": token})
    assert refused.status == 403
    assert not Job.objects.filter(retry_of=failed).exists()


def test_operator__may_retry_and_cancel_but_not_delete(page: Page, job_factory: JobFactory) -> None:
    # Given a member of "operators" and a failed job
    staff_user("otto", "operators")
    failed = failed_job(job_factory)

    # When he signs in and opens the failed job
    log_in(page, "otto", "pw-otto")
    page.goto(job_url(failed))

    # Then he may retry it, and the list offers retry and cancel, not delete
    expect(object_tools(page).get_by_role("button", name="Retry")).to_be_visible()
    page.goto(JOB_LIST)
    options = page.locator("select[name=action] option[value]:not([value=''])")
    expect(options).to_have_text(["Retry selected failed or cancelled jobs", "Cancel selected waiting jobs"])
    expect(object_tools(page).get_by_role("link", name="Delete finished jobs…")).to_have_count(0)


def test_trigger_without_admin_page__job_page_names_it(admin_page: Page, job_factory: JobFactory) -> None:
    # Given a job triggered by a model without an admin page
    trigger = ContentType.objects.get_for_model(JobAttempt)
    job = job_factory(source=Job.Source.TRIGGER, trigger_content_type=trigger, trigger_object_id="5")

    # When the operator opens it, then the page names the trigger, unlinked
    admin_page.goto(job_url(job))
    at_job_page(admin_page, job)
    expect(admin_page.locator(".field-related_links .readonly")).to_have_text("triggered by job attempt #5")
