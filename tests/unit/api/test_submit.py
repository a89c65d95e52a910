"""POST /api/jobs/: only offered actors, arguments validated, nothing written for bad input."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from rest_framework.test import APIClient

from apps.jobs.models import Job
from tests.unit.conftest import run_job

pytestmark = pytest.mark.django_db
JOBS = "/api/jobs/"


def test_submit__answers_202_with_the_job_and_its_location(api: APIClient, user: Any) -> None:
    response = api.post(JOBS, {"actor": "jobs.probe", "kwargs": {"sleep_ms": 500}}, format="json")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["actor"], body["status"], body["kwargs"], body["source"]) == (
        "jobs.probe",
        "pending",
        {"sleep_ms": 500},
        "api",
    )
    assert response["Location"] == body["links"]["self"] == f"http://testserver/api/jobs/{body['id']}/"
    job = Job.objects.get(pk=body["id"])
    assert (job.requested_by, job.queue_name) == (user, "default")
    assert api.get(response["Location"]).json()["id"] == body["id"]


def test_submit__positional_args_are_matched_to_the_actors_arguments_in_order(api: APIClient) -> None:
    response = api.post(JOBS, {"actor": "jobs.probe", "args": [20, 1]}, format="json")

    assert response.status_code == 202, response.json()
    assert Job.objects.get().kwargs == {"sleep_ms": 20, "fail_attempts": 1}


def test_submit__queue_priority_and_delay_are_applied(api: APIClient) -> None:
    response = api.post(
        JOBS, {"actor": "jobs.probe", "queue": "batch", "priority": 7, "delay_ms": 60_000}, format="json"
    )

    assert response.status_code == 202, response.json()
    job = Job.objects.get()
    assert (job.queue_name, job.priority) == ("batch", 7)
    assert job.scheduled_at is not None and 59 < (job.scheduled_at - job.created_at).total_seconds() < 61


@pytest.mark.parametrize("actor", ["jobs.nope", "jobs.generate_report", "jobs.prune_finished_jobs"])
def test_submit__an_actor_the_api_does_not_offer_is_400_naming_the_offered_ones(
    api: APIClient, actor: str
) -> None:
    response = api.post(JOBS, {"actor": actor}, format="json")

    assert response.status_code == 400
    message = response.json()["error"]["fields"]["actor"][0]
    assert actor in message and "jobs.probe" in message and "jobs.send_email" in message
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "field_path"),
    [
        ({"actor": "jobs.probe", "kwargs": {"sleep_ms": "soon"}}, ["kwargs", "sleep_ms"]),
        ({"actor": "jobs.probe", "kwargs": {"sleep_ms": -1}}, ["kwargs", "sleep_ms"]),
        ({"actor": "jobs.probe", "kwargs": {"sleep_ms": 10**9}}, ["kwargs", "sleep_ms"]),
        # The probe's worker-killing option is not offered to API users.
        ({"actor": "jobs.probe", "kwargs": {"crash_attempts": 1}}, ["kwargs", "crash_attempts"]),
        (
            {"actor": "jobs.send_email", "kwargs": {"to": ["a@example.com"], "body": "x"}},
            ["kwargs", "subject"],
        ),
        (
            {"actor": "jobs.send_email", "kwargs": {"to": ["nope"], "subject": "s", "body": "x"}},
            ["kwargs", "to"],
        ),
        ({"actor": "jobs.probe", "args": [1, 2, 3, 4]}, ["args"]),
        ({"actor": "jobs.probe", "args": [1], "kwargs": {"sleep_ms": 1}}, ["args"]),
        ({"actor": "jobs.probe", "kwargs": []}, ["kwargs"]),
        ({"actor": "jobs.probe", "queue": "nowhere"}, ["queue"]),
        ({"actor": "jobs.probe", "priority": 11}, ["priority"]),
        ({"actor": "jobs.probe", "delay_ms": -5}, ["delay_ms"]),
        ({"actor": "jobs.probe", "delay_ms": 10**15}, ["delay_ms"]),
        ({"kwargs": {}}, ["actor"]),
        # Fields a client must not set are refused, never applied.
        ({"actor": "jobs.probe", "status": "succeeded"}, ["status"]),
        ({"actor": "jobs.probe", "result": {"forged": True}}, ["result"]),
        ({"actor": "jobs.probe", "attempts": 0}, ["attempts"]),
    ],
)
def test_submit__bad_input_is_400_naming_the_field_and_writes_nothing(
    api: APIClient, body: dict[str, Any], field_path: list[str]
) -> None:
    response = api.post(JOBS, body, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (400, "invalid")
    detail: Any = error["fields"]
    for name in field_path:
        detail = detail[name]
    assert detail and isinstance(detail, list | dict)
    assert not Job.objects.exists()


def test_submit__a_nul_character_in_an_argument_is_400(api: APIClient) -> None:
    response = api.post(
        JOBS, {"actor": "jobs.process_batch", "kwargs": {"items": ["a\u0000b"]}}, format="json"
    )

    assert response.status_code == 400
    assert "NUL" in response.json()["error"]["message"]
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_submit__the_job_runs_and_its_page_shows_the_result(
    api: APIClient, stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    response = api.post(JOBS, {"actor": "jobs.probe", "kwargs": {"sleep_ms": 120}}, format="json")
    run_job(stub_broker, stub_worker, Job.objects.get(pk=response.json()["id"]))

    job = api.get(response["Location"]).json()
    assert job["status"] == "succeeded"
    assert job["result"]["attempt"] == 1
    assert job["progress"] == {"current": 120, "total": 120, "percent": 100.0, "message": "sleeping"}
    [attempt] = job["attempts"]
    assert attempt["outcome"] == "succeeded" and attempt["duration_ms"] >= 100
    assert job["error"] is None and job["duration_ms"] >= 100


def test_submit__is_throttled_per_user(api: APIClient, other_api: APIClient, monkeypatch: Any) -> None:
    from django.core.cache import cache

    from apps.jobs.api.access import SubmitThrottle

    cache.clear()
    monkeypatch.setattr(SubmitThrottle, "rate", "2/minute", raising=False)
    codes = [api.post(JOBS, {"actor": "jobs.probe"}, format="json").status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert api.post(JOBS, {"actor": "jobs.probe"}, format="json").json()["error"]["code"] == "throttled"
    # Another user has a budget of their own, and reading is never throttled.
    assert other_api.post(JOBS, {"actor": "jobs.probe"}, format="json").status_code == 202
    assert api.get(JOBS).status_code == 200
    cache.clear()
