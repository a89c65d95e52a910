"""The admin pages operators use, in a real browser: the job ledger, a job's detail, adding a report."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker
from playwright.sync_api import Page, expect

from apps.jobs.models import Job, JobAttempt, JobEvent
from apps.workloads.models import Report

XSS = "<script>window.__xss=1</script>"
JOB_LIST = "/admin/jobs/job/"


def job_change_url(job: Job) -> str:
    return f"/admin/jobs/job/{job.pk}/change/"


def test_job_list__shows_jobs_with_status_badges(admin_page: Page, job_factory: Callable[..., Job]) -> None:
    # Given jobs in three statuses
    job_factory(actor_name="jobs.send_email", status=Job.Status.QUEUED)
    job_factory(actor_name="jobs.sync_external_data", status=Job.Status.SUCCEEDED)
    job_factory(actor_name="jobs.process_batch", status=Job.Status.FAILED)

    # When an operator opens the job list
    admin_page.goto(JOB_LIST)

    # Then every job is a row with its coloured status badge
    rows = admin_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(3)
    badges = {
        "send_email": ("queued", "Queued"),
        "sync_external_data": ("succeeded", "Succeeded"),
        "process_batch": ("failed", "Failed"),
    }
    for actor, (status, label) in badges.items():
        row = rows.filter(has=admin_page.locator("td.field-actor", has_text=actor))
        expect(row.locator("span.job-status")).to_have_count(1)
        expect(row.locator(f"span.job-status-{status}")).to_have_text(label)


def test_job_list__status_filter_keeps_only_failed_jobs(
    admin_page: Page, job_factory: Callable[..., Job]
) -> None:
    # Given two failed jobs among others, all listed
    failed = [job_factory(status=Job.Status.FAILED) for _ in range(2)]
    job_factory(status=Job.Status.SUCCEEDED)
    job_factory(status=Job.Status.QUEUED)
    admin_page.goto(JOB_LIST)
    rows = admin_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(4)

    # When the operator picks "Failed" in the status filter
    admin_page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()

    # Then only the failed jobs remain, newest first
    expect(admin_page).to_have_url(re.compile(r"[?&]status__exact=failed\b"))
    expect(rows).to_have_count(2)
    expect(rows.locator("span.job-status")).to_have_count(2)
    expect(rows.locator("span.job-status-failed")).to_have_count(2)
    expect(rows.locator("th a")).to_have_text([str(job.pk)[:8] for job in reversed(failed)])


def test_job_list__search_by_job_id_finds_it(admin_page: Page, job_factory: Callable[..., Job]) -> None:
    # Given a running job among others
    wanted = job_factory(status=Job.Status.RUNNING)
    for _ in range(3):
        job_factory()
    admin_page.goto(JOB_LIST)

    # When the operator searches for its full id
    admin_page.locator("#searchbar").fill(str(wanted.pk))
    admin_page.locator("#searchbar").press("Enter")

    # Then it is the one row, and its link opens it
    rows = admin_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("th a")).to_have_text(str(wanted.pk)[:8])
    expect(rows.locator("span.job-status-running")).to_be_visible()
    rows.locator("th a").click()
    expect(admin_page).to_have_url(re.compile(re.escape(job_change_url(wanted)) + r"(\?|$)"))


def test_job_detail__shows_the_job_its_attempts_and_history_read_only(
    admin_page: Page, job_factory: Callable[..., Job]
) -> None:
    # Given a job that failed once and succeeded on its second attempt
    started = timezone.now() - timedelta(minutes=5)
    job = job_factory(
        actor_name="jobs.process_batch",
        queue_name="batch",
        status=Job.Status.SUCCEEDED,
        args=[{"items": [1, 2, 3]}, "tag-7"],
        attempts=2,
        result={"processed": 3},
        started_at=started,
        finished_at=started + timedelta(seconds=90),
    )
    JobAttempt.objects.create(
        job=job,
        number=1,
        worker_host="worker-a",
        worker_pid=101,
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        duration_ms=2000,
        outcome=JobAttempt.Outcome.RETRIED,
        error_class="ConnectionError",
        error_message="upstream timed out",
    )
    JobAttempt.objects.create(
        job=job,
        number=2,
        worker_host="worker-b",
        worker_pid=202,
        started_at=started + timedelta(seconds=80),
        finished_at=started + timedelta(seconds=90),
        duration_ms=10_000,
        outcome=JobAttempt.Outcome.SUCCEEDED,
    )
    transitions = [
        ("", "pending"),
        ("pending", "queued"),
        ("queued", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    for from_status, to_status in transitions:
        JobEvent.objects.create(job=job, from_status=from_status, to_status=to_status)

    # When an operator opens it
    admin_page.goto(job_change_url(job))

    # Then the page shows what it runs, where it stands and with what arguments
    expect(admin_page.locator(".field-actor_name .readonly")).to_have_text("jobs.process_batch")
    expect(admin_page.locator(".field-status_display span.job-status-succeeded")).to_have_text("Succeeded")
    expect(admin_page.locator(".field-attempts_display .readonly")).to_have_text("2 / 4")
    args = admin_page.locator(".field-args_display pre")
    expect(args).to_contain_text('"items": [')
    expect(args).to_contain_text('"tag-7"')
    expect(admin_page.locator(".field-result_display pre")).to_contain_text('"processed": 3')
    # ... each attempt, the failed one with its error ...
    attempts = admin_page.locator("#attempt_set-group tbody tr.has_original")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0).locator("td.field-outcome")).to_have_text("Failed, retried")
    expect(attempts.nth(0).locator("td.field-error")).to_have_text("ConnectionError: upstream timed out")
    expect(attempts.nth(0).locator("td.field-worker_host")).to_have_text("worker-a")
    expect(attempts.nth(1).locator("td.field-outcome")).to_have_text("Succeeded")
    # ... and its status history, in order
    events = admin_page.locator("#events-group tbody tr.has_original")
    expect(events).to_have_count(len(transitions))
    expect(events.locator("td.field-to_status")).to_have_text(
        ["Pending", "Queued", "Running", "Retrying", "Running", "Succeeded"]
    )
    # And nothing on it can be changed
    expect(admin_page.locator("#job_form")).to_have_count(1)
    expect(admin_page.locator("[name=_save], [name=_continue], [name=_addanother]")).to_have_count(0)
    editable = admin_page.locator("#job_form").locator("input:not([type=hidden]), textarea, select")
    expect(editable).to_have_count(0)


def test_job_detail__names_a_trigger_without_an_admin_page(
    admin_page: Page, job_factory: Callable[..., Job]
) -> None:
    # Given jobs triggered by a model without an admin page, and by one since removed from the code
    unregistered = ContentType.objects.get_for_model(JobAttempt)
    removed = ContentType.objects.create(app_label="billing", model="invoice")
    jobs = [
        job_factory(source=Job.Source.TRIGGER, trigger_content_type=unregistered, trigger_object_id="5"),
        job_factory(source=Job.Source.TRIGGER, trigger_content_type=removed, trigger_object_id="7"),
    ]

    for job, label in zip(jobs, ["job attempt #5", "invoice #7"], strict=True):
        # When an operator opens the job, then the page names the trigger, unlinked
        response = admin_page.goto(job_change_url(job))
        assert response is not None and response.status == 200
        trigger = admin_page.locator(".field-related_links .readonly")
        expect(trigger).to_have_text(f"triggered by {label}")
        expect(trigger.locator("a")).to_have_count(0)


def test_report_add__saving_creates_the_report_and_links_the_job_it_started(
    admin_page: Page, admin_user: object, stub_broker: StubBroker
) -> None:
    # Given the add form
    admin_page.goto("/admin/workloads/report/add/")

    # When an operator chooses a users report and saves it
    admin_page.get_by_label("Type").select_option(label="Users")
    admin_page.locator("[name=_continue]").click()

    # Then one report exists, with the one job its save submitted (queued; no worker runs here)
    expect(admin_page.locator(".messagelist .success")).to_contain_text("was added successfully")
    report = Report.objects.get()
    job = Job.objects.get()
    assert report.type == Report.Type.USERS
    assert report.created_by == admin_user
    assert report.job_id == job.pk
    assert job.actor_name == "jobs.generate_report"
    assert job.args == [report.pk]
    assert job.source == Job.Source.TRIGGER
    assert Job.objects.count() == 1
    assert job.status in (Job.Status.PENDING, Job.Status.QUEUED)
    # Published once to the StubBroker, where no worker takes it.
    assert stub_broker.queues["reports"].qsize() == (1 if job.status == Job.Status.QUEUED else 0)
    # ... and its change page links to that job, with the job's status badge
    expect(admin_page).to_have_url(re.compile(rf"/admin/workloads/report/{report.pk}/change/$"))
    job_field = admin_page.locator(".field-job_link .readonly")
    expect(job_field.locator(f'a[href="{job_change_url(job)}"]')).to_have_text(str(job.pk))
    expect(job_field.locator(f"span.job-status-{job.status}")).to_be_visible()

    # And the job's page links back to the report that started it
    job_field.get_by_role("link").click()
    expect(admin_page.locator(".field-related_links a").first).to_have_attribute(
        "href", f"/admin/workloads/report/{report.pk}/change/"
    )


def test_job_detail__escapes_html_in_the_error_and_arguments(
    admin_page: Page, job_factory: Callable[..., Job]
) -> None:
    # Given a failed job whose error and arguments carry markup (from a user, or echoed by an API)
    job = job_factory(
        actor_name=f"jobs.{XSS}",
        status=Job.Status.FAILED,
        last_error=XSS,
        args=[XSS],
        kwargs={"note": XSS},
        last_traceback=XSS,
        progress_message=XSS,
    )

    # When an operator opens its page, then the markup shows as text and never runs
    admin_page.goto(job_change_url(job))
    expect(admin_page.locator(".field-error_display .readonly")).to_have_text(XSS)
    expect(admin_page.locator(".field-traceback_display .readonly")).to_have_text(XSS)
    expect(admin_page.locator(".field-args_display pre")).to_contain_text(f'"{XSS}"')
    expect(admin_page.locator(".field-kwargs_display pre")).to_contain_text(f'"note": "{XSS}"')
    assert_no_injected_script(admin_page)

    # And the same for the job list
    admin_page.goto(JOB_LIST)
    expect(admin_page.locator("#result_list tbody td.field-actor")).to_have_text(XSS)
    assert_no_injected_script(admin_page)


def assert_no_injected_script(page: Page) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.evaluate("[...document.scripts].filter(s => s.text.includes('__xss')).length") == 0
