"""GET /api/jobs/ and /api/jobs/{id}/: each user sees their own jobs; operators see all."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from apps.jobs.models import Job, JobAttempt
from tests.unit.api.conftest import token_client

pytestmark = pytest.mark.django_db
JOBS = "/api/jobs/"


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.json()
    return [job["id"] for job in response.json()["results"]]


def test_job__shows_progress_attempts_and_the_error_of_a_failed_job(
    api: APIClient, operator_api: APIClient, user: Any, job_factory: Callable[..., Job]
) -> None:
    now = timezone.now()
    job = job_factory(
        status=Job.Status.FAILED,
        requested_by=user,
        attempts=1,
        progress_current=3,
        progress_total=4,
        progress_message="step 3",
        last_error="ValueError: boom",
        result={"never": "shown"},
        started_at=now - timedelta(seconds=2),
        finished_at=now,
    )
    JobAttempt.objects.create(
        job=job,
        number=1,
        worker_host="w1",
        worker_pid=1,
        started_at=now - timedelta(seconds=2),
        finished_at=now,
        duration_ms=2000,
        outcome=JobAttempt.Outcome.FAILED,
        error_class="ValueError",
        error_message="boom",
        traceback="Traceback ... secret path",
    )

    body = api.get(f"{JOBS}{job.pk}/").json()

    assert body["progress"] == {"current": 3, "total": 4, "percent": 75.0, "message": "step 3"}
    assert (body["status"], body["error"], body["result"], body["duration_ms"]) == (
        "failed",
        "ValueError: boom",
        None,
        2000,
    )
    [attempt] = body["attempts"]
    assert (attempt["number"], attempt["outcome"], attempt["duration_ms"], attempt["error_class"]) == (
        1,
        "failed",
        2000,
        "ValueError",
    )
    # Tracebacks show the worker's code and paths: operators see them, submitters do not.
    assert attempt["traceback"] is None
    assert operator_api.get(f"{JOBS}{job.pk}/").json()["attempts"][0]["traceback"].startswith("Traceback")
    assert body["links"]["events"].endswith(f"/api/jobs/{job.pk}/events/")


@pytest.mark.parametrize("path", ["", "retry/", "cancel/", "events/"])
def test_job__of_another_user_is_404_as_if_it_did_not_exist(
    other_api: APIClient, user: Any, job_factory: Callable[..., Job], path: str
) -> None:
    job = job_factory(status=Job.Status.FAILED, requested_by=user)
    missing = f"{JOBS}00000000-0000-0000-0000-000000000000/{path}"
    method = other_api.get if path in ("", "events/") else other_api.post

    theirs, nobodys = method(f"{JOBS}{job.pk}/{path}"), method(missing)

    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.json() == nobodys.json()
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED


def test_job__a_malformed_id_is_404(api: APIClient) -> None:
    assert api.get(f"{JOBS}not-a-uuid/").status_code == 404


def test_jobs__lists_only_the_users_own_jobs_and_everything_for_operators(
    api: APIClient, user: Any, job_factory: Callable[..., Job]
) -> None:
    mine = job_factory(requested_by=user)
    bob = get_user_model().objects.create_user("bob")
    theirs = job_factory(requested_by=bob)
    job_factory()  # submitted by code: nobody's

    assert ids(api.get(JOBS)) == [str(mine.pk)]
    bob.user_permissions.add(Permission.objects.get(codename="view_job"))
    assert len(ids(token_client(get_user_model().objects.get(pk=bob.pk)).get(JOBS))) == 3
    assert str(theirs.pk) not in ids(api.get(JOBS))


def test_jobs__filters_by_status_actor_queue_and_creation_time(
    api: APIClient, user: Any, job_factory: Callable[..., Job]
) -> None:
    failed = job_factory(requested_by=user, status=Job.Status.FAILED)
    running = job_factory(requested_by=user, status=Job.Status.RUNNING, queue_name="batch")
    email = job_factory(requested_by=user, actor_name="jobs.send_email", queue_name="emails")
    old = job_factory(requested_by=user)
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))

    assert set(ids(api.get(JOBS, {"status": ["failed", "running"]}))) == {str(failed.pk), str(running.pk)}
    assert ids(api.get(JOBS, {"actor": "jobs.send_email"})) == [str(email.pk)]
    assert ids(api.get(JOBS, {"queue": "batch"})) == [str(running.pk)]
    day_ago = (timezone.now() - timedelta(days=1)).isoformat()
    assert ids(api.get(JOBS, {"created_before": day_ago})) == [str(old.pk)]
    assert str(old.pk) not in ids(api.get(JOBS, {"created_after": day_ago}))
    bad = api.get(JOBS, {"status": "exploded"})
    assert bad.status_code == 400 and "status" in bad.json()["error"]["fields"]


def test_jobs__pages_with_a_cursor_newest_first_without_a_count(
    api: APIClient, user: Any, job_factory: Callable[..., Job]
) -> None:
    now = timezone.now()
    made = [job_factory(requested_by=user) for _ in range(5)]
    for age, job in enumerate(made):
        Job.objects.filter(pk=job.pk).update(created_at=now - timedelta(minutes=age))

    first = api.get(JOBS, {"page_size": 2}).json()
    second = api.get(first["next"]).json()
    third = api.get(second["next"]).json()

    assert "count" not in first
    seen = [job["id"] for page in (first, second, third) for job in page["results"]]
    assert seen == [str(job.pk) for job in made]
    assert third["next"] is None
    oldest_first = ids(api.get(JOBS, {"ordering": "created_at", "page_size": 5}))
    assert oldest_first == [str(job.pk) for job in reversed(made)]


def test_jobs__without_credentials_is_401_with_the_auth_scheme(client: Any) -> None:
    response = client.get(JOBS)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] == "not_authenticated"


def test_jobs__a_wrong_token_is_401(db: None) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get(JOBS).status_code == 401
