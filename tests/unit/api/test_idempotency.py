"""Idempotency-Key: a repeated POST returns the first answer; a different request under it is 422."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.jobs.models import IdempotentRequest, Job
from tests.unit.api.conftest import token_client

pytestmark = pytest.mark.django_db
JOBS = "/api/jobs/"
PROBE = {"actor": "jobs.probe", "kwargs": {"sleep_ms": 1}}


def post(client: APIClient, body: Any, key: str, path: str = JOBS) -> Any:
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_same_key_and_body__returns_the_same_job(api: APIClient) -> None:
    first = post(api, PROBE, "k-1")
    again = post(api, {"kwargs": {"sleep_ms": 1}, "actor": "jobs.probe"}, "k-1")  # same JSON, other order

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


def test_same_key_with_another_body__is_422_and_writes_nothing(api: APIClient) -> None:
    first = post(api, PROBE, "k-1")

    response = post(api, {"actor": "jobs.probe", "kwargs": {"sleep_ms": 2}}, "k-1")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert [str(pk) for pk in Job.objects.values_list("pk", flat=True)] == [first.json()["id"]]


def test_same_key_on_another_endpoint__is_422(
    api: APIClient, user: Any, job_factory: Callable[..., Job]
) -> None:
    job = job_factory(status=Job.Status.QUEUED, requested_by=user)
    post(api, PROBE, "k-1")

    assert post(api, None, "k-1", path=f"{JOBS}{job.pk}/cancel/").status_code == 422
    assert Job.objects.get(pk=job.pk).status == Job.Status.QUEUED


def test_a_refused_request__leaves_its_key_free_for_the_corrected_one(api: APIClient) -> None:
    assert post(api, {"actor": "jobs.probe", "kwargs": {"sleep_ms": -1}}, "k-1").status_code == 400

    assert post(api, PROBE, "k-1").status_code == 202
    assert Job.objects.count() == 1


def test_keys__belong_to_their_user(api: APIClient, other_api: APIClient) -> None:
    assert post(api, PROBE, "shared").json()["id"] != post(other_api, PROBE, "shared").json()["id"]
    assert Job.objects.count() == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_a_malformed_key__is_400(api: APIClient, key: str) -> None:
    response = post(api, PROBE, key)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["error"]["fields"]
    assert not Job.objects.exists()


def test_retry__with_a_key_retries_once(api: APIClient, user: Any, job_factory: Callable[..., Job]) -> None:
    job = job_factory(status=Job.Status.FAILED, requested_by=user)

    first, again = (post(api, None, "r-1", path=f"{JOBS}{job.pk}/retry/") for _ in range(2))

    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert job.retries.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key__make_one_job(user: Any) -> None:
    # Eight clients send the same request at once, as retries of a timed-out call would.
    answers: list[Any] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        client = token_client(user)
        barrier.wait()
        try:
            answers.append(post(client, PROBE, "race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [answer.status_code for answer in answers] == [202] * 8
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert Job.objects.count() == IdempotentRequest.objects.count() == 1


def test_keys__are_forgotten_after_the_retention_by_the_ledger_pruning(api: APIClient) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.jobs import services

    post(api, PROBE, "old")
    post(api, PROBE, "young")
    IdempotentRequest.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))

    assert services.jobs_prune_finished()["idempotency_keys"] == 1

    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["young"]
    assert post(api, PROBE, "old").json()["id"] != post(api, PROBE, "young").json()["id"]


def test_keys__past_the_retention_are_free_even_before_the_pruning(api: APIClient) -> None:
    from datetime import timedelta

    from django.utils import timezone

    first = post(api, PROBE, "k-old")
    IdempotentRequest.objects.filter(key="k-old").update(created_at=timezone.now() - timedelta(hours=25))

    again = post(api, {"actor": "jobs.probe"}, "k-old")  # another body: no 422 for a forgotten key

    assert again.status_code == 202 and again.json()["id"] != first.json()["id"]
    assert IdempotentRequest.objects.filter(key="k-old").count() == 1
