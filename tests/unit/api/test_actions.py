"""POST /api/jobs/{id}/retry/ and /cancel/: the services the admin uses, with 409 where they refuse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from dramatiq.brokers.stub import StubBroker
from rest_framework.test import APIClient

from apps.jobs.models import Job
from apps.workloads.models import ProbeRun
from tests.unit.api.conftest import token_client
from tests.unit.conftest import run_all

pytestmark = pytest.mark.django_db
JOBS = "/api/jobs/"
Status = Job.Status


@pytest.mark.parametrize("status", [Status.FAILED, Status.CANCELLED])
def test_retry__runs_the_job_again_as_a_new_job_linked_to_it(
    api: APIClient, user: Any, job_factory: Callable[..., Job], status: str
) -> None:
    job = job_factory(status=status, requested_by=user, kwargs={"sleep_ms": 5})

    response = api.post(f"{JOBS}{job.pk}/retry/")

    assert response.status_code == 202, response.json()
    retry = response.json()
    assert retry["id"] != str(job.pk) and retry["retry_of"] == str(job.pk)
    assert (retry["status"], retry["kwargs"]) == ("pending", {"sleep_ms": 5})
    assert response["Location"].endswith(f"/api/jobs/{retry['id']}/")
    assert api.get(f"{JOBS}{job.pk}/").json()["retries"] == [retry["id"]]
    assert Job.objects.get(pk=job.pk).status == status  # the first job's history stays


@pytest.mark.parametrize(
    "status",
    [Status.PENDING, Status.QUEUED, Status.RUNNING, Status.RETRYING, Status.SUCCEEDED, Status.SKIPPED],
)
def test_retry__of_a_job_that_did_not_end_in_failure_is_409(
    api: APIClient, user: Any, job_factory: Callable[..., Job], status: str
) -> None:
    job = job_factory(status=status, requested_by=user)

    response = api.post(f"{JOBS}{job.pk}/retry/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert status in response.json()["error"]["message"]
    assert Job.objects.count() == 1


def test_retry__twice_while_the_first_retry_waits_is_409(
    api: APIClient, user: Any, job_factory: Callable[..., Job]
) -> None:
    job = job_factory(status=Status.FAILED, requested_by=user)
    assert api.post(f"{JOBS}{job.pk}/retry/").status_code == 202
    assert api.post(f"{JOBS}{job.pk}/retry/").status_code == 409
    assert Job.objects.count() == 2


@pytest.mark.parametrize("status", [Status.PENDING, Status.QUEUED, Status.RETRYING])
def test_cancel__a_waiting_job_is_cancelled(
    api: APIClient, user: Any, job_factory: Callable[..., Job], status: str
) -> None:
    job = job_factory(status=status, requested_by=user)

    response = api.post(f"{JOBS}{job.pk}/cancel/")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    assert job.events.order_by("-pk").first().note == "cancelled by alice"


@pytest.mark.parametrize("status", [Status.RUNNING, Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
def test_cancel__a_running_or_finished_job_is_409(
    api: APIClient, user: Any, job_factory: Callable[..., Job], status: str
) -> None:
    job = job_factory(status=status, requested_by=user)

    assert api.post(f"{JOBS}{job.pk}/cancel/").status_code == 409
    assert Job.objects.get(pk=job.pk).status == status


@pytest.mark.django_db(transaction=True)
def test_cancel__a_job_whose_message_is_already_published_never_runs(
    api: APIClient, stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    stub_worker.pause()
    submitted = api.post(JOBS, {"actor": "jobs.probe"}, format="json").json()
    assert stub_broker.queues["default"].qsize() == 1  # published after commit

    assert api.post(f"{JOBS}{submitted['id']}/cancel/").status_code == 200
    stub_worker.resume()
    run_all(stub_broker, stub_worker)

    job = Job.objects.get(pk=submitted["id"])
    assert (job.status, job.attempts) == (Status.CANCELLED, 0)
    assert not ProbeRun.objects.filter(job_id=job.pk).exists()


def test_actions__on_another_users_job_need_the_permission(
    user: Any, job_factory: Callable[..., Job]
) -> None:
    failed = job_factory(status=Status.FAILED, requested_by=user)
    waiting = job_factory(status=Status.QUEUED, requested_by=user)
    operator = get_user_model().objects.create_user("operator", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = token_client(operator)

    # Seeing every job is not enough to act on them
    assert client.post(f"{JOBS}{failed.pk}/retry/").status_code == 403
    assert client.post(f"{JOBS}{waiting.pk}/cancel/").status_code == 403
    operator.user_permissions.add(*Permission.objects.filter(codename__in=["retry_job", "cancel_job"]))
    client = token_client(get_user_model().objects.get(pk=operator.pk))  # a fresh permission cache

    retried = client.post(f"{JOBS}{failed.pk}/retry/")
    assert retried.status_code == 202
    assert client.post(f"{JOBS}{waiting.pk}/cancel/").status_code == 200
    # The retry stays the submitter's: they can follow it
    assert Job.objects.get(pk=retried.json()["id"]).requested_by == user
