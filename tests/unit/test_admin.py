"""The job admin through the Django test client: what an operator may delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from apps.jobs.models import Job

Status = Job.Status
JOB_LIST = "/admin/jobs/job/"


def _delete_url(job: Job) -> str:
    return f"/admin/jobs/job/{job.pk}/delete/"


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.mark.parametrize("status", list(Job.ACTIVE_STATUSES))
@pytest.mark.django_db
def test_job_delete__an_active_job_cannot_be_deleted(
    operator: Client, job_factory: Callable[..., Job], status: str
) -> None:
    # Given a job that is still pending, queued, running or retrying
    job = job_factory(status=status)

    # When an operator opens its delete page, or posts the confirmation anyway
    page = operator.get(_delete_url(job))
    confirmed = operator.post(_delete_url(job), {"post": "yes"})

    # Then both are refused and the job is still in the ledger
    assert page.status_code == 403
    assert confirmed.status_code == 403
    assert Job.objects.filter(pk=job.pk).exists()
    # And its change page offers no delete link
    assert _delete_url(job) not in operator.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()


@pytest.mark.parametrize("status", list(Job.FINAL_STATUSES))
@pytest.mark.django_db
def test_job_delete__a_finished_job_can_be_deleted(
    operator: Client, job_factory: Callable[..., Job], status: str
) -> None:
    job = job_factory(status=status)

    assert operator.get(_delete_url(job)).status_code == 200
    response = operator.post(_delete_url(job), {"post": "yes"})

    assert response.status_code == 302
    assert not Job.objects.filter(pk=job.pk).exists()


@pytest.mark.django_db
def test_job_delete_selected__deletes_only_finished_jobs_and_names_the_skipped_active_ones(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    # Given two finished jobs and three active ones, all selected
    finished = [job_factory(status=Status.SUCCEEDED), job_factory(status=Status.FAILED)]
    active = [job_factory(status=s) for s in (Status.PENDING, Status.RUNNING, Status.RETRYING)]
    selected = [str(job.pk) for job in finished + active]

    # When the operator confirms "Delete selected jobs"
    response = operator.post(
        JOB_LIST, {"action": "delete_selected", "_selected_action": selected, "post": "yes"}, follow=True
    )

    # Then only the finished jobs are gone
    assert response.status_code == 200
    assert set(Job.objects.values_list("pk", flat=True)) == {job.pk for job in active}
    # And the operator is told how many active jobs were skipped
    messages = [str(message) for message in response.context["messages"]]
    assert any("3 active jobs were not deleted" in message for message in messages), messages
    assert any("Successfully deleted 2 jobs" in message for message in messages), messages


@pytest.mark.django_db
def test_job_delete_selected__confirmation_page_lists_only_finished_jobs(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    finished = job_factory(status=Status.SUCCEEDED)
    running = job_factory(status=Status.RUNNING)

    response = operator.post(
        JOB_LIST, {"action": "delete_selected", "_selected_action": [str(finished.pk), str(running.pk)]}
    )

    # The confirmation page asks about the finished job only, and says the running one is left alone
    assert response.status_code == 200
    page = response.content.decode()
    assert f'value="{finished.pk}"' in page
    assert f'value="{running.pk}"' not in page
    assert "1 active job was not deleted" in page
    assert Job.objects.count() == 2


@pytest.mark.django_db
def test_job_delete_selected__only_active_jobs_selected_deletes_nothing(
    operator: Client, job_factory: Callable[..., Job]
) -> None:
    active = [job_factory(status=Status.QUEUED), job_factory(status=Status.RUNNING)]

    response = operator.post(
        JOB_LIST,
        {"action": "delete_selected", "_selected_action": [str(job.pk) for job in active], "post": "yes"},
        follow=True,
    )

    assert response.status_code == 200
    assert Job.objects.count() == 2
    messages = [str(message) for message in response.context["messages"]]
    assert any("2 active jobs were not deleted" in message for message in messages), messages
    assert not any("Successfully deleted" in message for message in messages), messages
