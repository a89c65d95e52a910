"""The console's job list, job page and actions, through the Django test client on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from apps.jobs.models import Job

pytestmark = pytest.mark.django_db
Status = Job.Status
JOB_LIST = "/admin/jobs/job/"


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def member_of(group: str) -> Client:
    user = get_user_model().objects.create_user(f"{group}-user", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def listed(response: Any) -> list[str]:
    assert response.status_code == 200
    return [str(job.pk) for job in response.context["cl"].result_list]


def history(job: Job) -> list[str]:
    return list(LogEntry.objects.filter(object_id=str(job.pk)).values_list("change_message", flat=True))


def test_list__searches_by_id_prefix_actor_key_and_error_text(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    job = job_factory(status=Status.FAILED, last_error="SMTPRecipientsRefused: mailbox full")
    email = job_factory(actor_name="jobs.send_email", idempotency_key="welcome-42")
    other = job_factory(status=Status.SUCCEEDED, last_error="mailbox full, but it succeeded later")

    assert listed(operator.get(JOB_LIST, {"q": str(job.pk)[:8]})) == [str(job.pk)]
    assert listed(operator.get(JOB_LIST, {"q": str(job.pk)})) == [str(job.pk)]
    assert listed(operator.get(JOB_LIST, {"q": "send_email"})) == [str(email.pk)]
    assert listed(operator.get(JOB_LIST, {"q": "welcome-42"})) == [str(email.pk)]
    # error text is searched among failed and retrying jobs, a small part of a large ledger
    assert listed(operator.get(JOB_LIST, {"q": "mailbox full"})) == [str(job.pk)]
    assert str(other.pk) not in listed(operator.get(JOB_LIST, {"q": "mailbox"}))


def test_list__filters_and_columns_cost_a_fixed_number_of_queries(
    operator: Client, job_factory: Callable[..., Job], admin_user: Any, django_assert_max_num_queries: Any
) -> None:
    for _ in range(30):
        job_factory(status=Status.FAILED, requested_by=admin_user)
    with django_assert_max_num_queries(12):  # session, user, count estimate, page: not one per row
        response = operator.get(JOB_LIST, {"status__exact": "failed", "actor_name": "jobs.probe"})
    assert len(listed(response)) == 30
    assert b"job-status-failed" in response.content


def test_retry_selected__retries_failed_jobs_and_says_why_others_were_skipped(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    failed = job_factory(status=Status.FAILED)
    running = job_factory(status=Status.RUNNING)

    response = operator.post(
        JOB_LIST, {"action": "retry_selected", "_selected_action": [failed.pk, running.pk]}, follow=True
    )

    retry = Job.objects.get(retry_of=failed)
    assert retry.status == Status.PENDING
    text = " ".join(str(message) for message in response.context["messages"])
    assert "1 job runs again" in text and "Skipped 1 (1 running)" in text and str(running.pk)[:8] in text
    assert history(failed) == [f"Retried as job {retry.pk} (bulk)."]
    assert Job.objects.get(pk=running.pk).status == Status.RUNNING and not history(running)


def test_cancel_everything_matching_the_filter__asks_first_with_the_count(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    queued = [job_factory(status=Status.QUEUED) for _ in range(3)]
    job_factory(status=Status.SUCCEEDED)
    form = {
        "action": "cancel_selected",
        "select_across": "1",
        "_selected_action": [queued[0].pk],
        "index": "0",
    }

    confirmation = operator.post(f"{JOB_LIST}?status__exact=queued", form)

    assert confirmation.status_code == 200
    assert b"<strong>3</strong> jobs" in confirmation.content
    assert Job.objects.filter(status=Status.CANCELLED).count() == 0

    operator.post(f"{JOB_LIST}?status__exact=queued", {**form, "confirmed": "yes"})

    assert Job.objects.filter(status=Status.CANCELLED).count() == 3
    assert Job.objects.filter(status=Status.SUCCEEDED).count() == 1


def test_job_page__retry_and_cancel_buttons_act_and_are_recorded(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    failed = job_factory(status=Status.FAILED)
    queued = job_factory(status=Status.QUEUED)

    page = operator.get(f"{JOB_LIST}{failed.pk}/change/")
    assert f"{failed.pk}/retry/" in page.content.decode() and "/cancel/" not in page.content.decode()

    retried = operator.post(f"{JOB_LIST}{failed.pk}/retry/")
    retry = Job.objects.get(retry_of=failed)
    assert retried["Location"] == f"{JOB_LIST}{retry.pk}/change/"
    assert history(failed) == [f"Retried (failed) as job {retry.pk}."]

    operator.post(f"{JOB_LIST}{queued.pk}/cancel/")
    assert Job.objects.get(pk=queued.pk).status == Status.CANCELLED
    assert history(queued) == ["Cancelled (was queued)."]
    # A second cancel is refused with a message, and changes nothing
    again = operator.post(f"{JOB_LIST}{queued.pk}/cancel/", follow=True)
    assert "cannot move from cancelled" in " ".join(str(m) for m in again.context["messages"])


def test_edit_and_retry__validates_like_the_api_and_records_the_change(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    job = job_factory(status=Status.FAILED, kwargs={"sleep_ms": 5})
    url = f"{JOB_LIST}{job.pk}/edit-and-retry/"

    bad_json = operator.post(url, {"args": "[]", "kwargs": "{nope"})
    bad_value = operator.post(url, {"args": "[]", "kwargs": '{"sleep_ms": "soon"}'})
    assert b"Not valid JSON" in bad_json.content
    assert b"kwargs.sleep_ms" in bad_value.content
    assert Job.objects.count() == 1

    operator.post(url, {"args": "[]", "kwargs": json.dumps({"sleep_ms": 50})})

    retry = Job.objects.get(retry_of=job)
    assert retry.kwargs == {"sleep_ms": 50}
    change = "args [] -> [], kwargs {'sleep_ms': 5} -> {'sleep_ms': 50}"
    assert history(job) == [f"Edited and retried as job {retry.pk}: {change}."]


def test_delete_finished__counts_first_then_deletes_only_finished_jobs_before_the_day(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    old = timezone.now() - timedelta(days=40)
    gone = job_factory(status=Status.SUCCEEDED, finished_at=old)
    kept_recent = job_factory(status=Status.FAILED, finished_at=timezone.now())
    kept_active = job_factory(status=Status.RUNNING)
    day = (timezone.now() - timedelta(days=30)).date().isoformat()

    preview = operator.post(f"{JOB_LIST}delete-finished/", {"before": day})
    assert b"<strong>1</strong> finished job" in preview.content
    assert Job.objects.filter(pk=gone.pk).exists()

    operator.post(f"{JOB_LIST}delete-finished/", {"before": day, "confirmed": "yes"})

    assert set(Job.objects.values_list("pk", flat=True)) == {kept_recent.pk, kept_active.pk}
    assert LogEntry.objects.filter(object_repr__startswith="1 jobs finished before").exists()


def test_job_page__renders_what_a_job_carries_inert(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    xss = "<script>window.__xss=1</script>"
    job = job_factory(
        status=Status.FAILED, kwargs={"to": xss}, last_error=xss, last_traceback=xss, progress_message=xss
    )

    content = operator.get(f"{JOB_LIST}{job.pk}/change/").content.decode()

    assert xss not in content
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in content


def test_roles__viewers_only_look_operators_retry_and_cancel(job_factory: Callable[..., Job]) -> None:
    failed = job_factory(status=Status.FAILED)
    viewer, operator = member_of("viewers"), member_of("operators")

    assert viewer.get(JOB_LIST).status_code == 200
    assert "retry_selected" not in viewer.get(JOB_LIST).content.decode()
    assert viewer.post(f"{JOB_LIST}{failed.pk}/retry/").status_code == 403
    assert viewer.post(f"{JOB_LIST}{failed.pk}/cancel/").status_code == 403
    assert not Job.objects.filter(retry_of=failed).exists()

    assert "retry_selected" in operator.get(JOB_LIST).content.decode()
    assert operator.post(f"{JOB_LIST}{failed.pk}/retry/").status_code == 302
    assert Job.objects.filter(retry_of=failed).exists()
    # Operators cannot purge dead letters or delete jobs; superusers can
    user = get_user_model().objects.get(username="operators-user")
    assert user.has_perm("jobs.requeue_dead_letters") and not user.has_perm("jobs.purge_dead_letters")
    assert operator.get(f"{JOB_LIST}delete-finished/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_report_page__lists_its_jobs_and_runs_one_again(operator: Client, stub_broker: Any) -> None:
    from apps.workloads.models import Report

    report = Report.objects.create(type=Report.Type.JOBS)  # its save trigger submits the build job
    build = Job.objects.get(actor_name="jobs.generate_report")
    Job.objects.filter(pk=build.pk).update(status=Status.FAILED)
    page = operator.get(f"/admin/workloads/report/{report.pk}/change/")
    assert page.status_code == 200
    content = page.content.decode()
    assert 'id="triggered-jobs"' in content and str(build.pk)[:8] in content and "Run again" in content

    operator.post(f"/admin/workloads/report/{report.pk}/jobs/{build.pk}/run-again/")

    again = Job.objects.get(retry_of=build)
    assert (again.actor_name, again.args, again.trigger) == ("jobs.generate_report", [report.pk], report)
    assert history(build) == [f"Run again from report #{report.pk} as job {again.pk}."]


def test_report_list__costs_a_fixed_number_of_queries(
    operator: Client, job_factory: Callable[..., Job], django_assert_max_num_queries: Any
) -> None:
    from apps.workloads.models import Report

    for _ in range(20):
        Report.objects.create(type=Report.Type.JOBS, job=job_factory(status=Status.SUCCEEDED))
    with django_assert_max_num_queries(8):  # not one query per report for its job's status
        response = operator.get("/admin/workloads/report/")
    assert response.status_code == 200 and response.content.count(b'class="job-status ') == 20


def test_admin_index__links_the_console_pages(operator: Client) -> None:
    content = operator.get("/admin/").content.decode()
    for url in ("/admin/console/dashboard/", "/admin/console/workers/", "/admin/console/dead-letters/"):
        assert f'href="{url}"' in content
        assert operator.get(url).status_code == 200, url
    assert "/admin/django_dramatiq/" not in content  # its task list stays empty: not shown


def test_job_page__of_a_retry_links_both_ways(operator: Client, job_factory: Callable[..., Job]) -> None:
    failed = job_factory(status=Status.FAILED)
    operator.post(f"{JOB_LIST}{failed.pk}/retry/")
    retry = Job.objects.get(retry_of=failed)

    first, second = (
        operator.get(f"{JOB_LIST}{failed.pk}/change/"),
        operator.get(f"{JOB_LIST}{retry.pk}/change/"),
    )

    assert first.status_code == second.status_code == 200
    assert f"{JOB_LIST}{retry.pk}/change/" in first.content.decode()
    assert f"{JOB_LIST}{failed.pk}/change/" in second.content.decode()
