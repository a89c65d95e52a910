"""/metrics: the ledger's and the queues' Prometheus metrics, read on each scrape."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import prometheus_client
import pytest
from django.db import OperationalError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.jobs import metrics, queues, stats
from apps.jobs.models import Job
from apps.jobs.queues import QueueDepth

pytestmark = pytest.mark.django_db
Status = Job.Status
METRICS = "/metrics"
CLOSED_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:1/%2F"
FAMILIES = {
    "jobs_ledger_jobs",
    "jobs_queue_messages",
    "jobs_queue_consumers",
    "jobs_queue_running",
    "jobs_queue_oldest_waiting_seconds",
    "jobs_broker_up",
    "jobs_ledger_up",
    "jobs_metrics_collect_duration_seconds",
}

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(client: Client | None = None, **headers: Any) -> Samples:
    """GET /metrics and parse it: family -> {sorted labels: value}."""
    response = (client or Client()).get(METRICS, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        values = samples.setdefault(family.name, {})
        for sample in family.samples:
            values[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def jobs(samples: Samples, status: str, actor: str) -> float:
    return samples["jobs_ledger_jobs"][(("actor", actor), ("status", status))]


def per_queue(samples: Samples, family: str) -> dict[str, float]:
    return {dict(labels)["queue"]: value for labels, value in samples[family].items()}


@pytest.fixture
def ledger(job_factory: Callable[..., Job]) -> None:
    """jobs.probe: 2 queued, 1 running, 2 succeeded and 1 failed today, 1 succeeded 2 days ago;
    jobs.send_email: 1 retrying, 1 cancelled today."""
    now = timezone.now()
    job_factory(status=Status.QUEUED)
    job_factory(status=Status.QUEUED)
    job_factory(status=Status.RUNNING, started_at=now)
    for hours in (1, 20):
        job_factory(status=Status.SUCCEEDED, finished_at=now - timedelta(hours=hours))
    job_factory(status=Status.FAILED, finished_at=now - timedelta(hours=2))
    job_factory(status=Status.SUCCEEDED, finished_at=now - timedelta(days=2))
    email = {"actor_name": "jobs.send_email", "queue_name": "emails"}
    job_factory(status=Status.RETRYING, next_retry_at=now + timedelta(minutes=5), **email)
    job_factory(status=Status.CANCELLED, finished_at=now - timedelta(minutes=1), **email)


@pytest.fixture
def broker_depths(monkeypatch: pytest.MonkeyPatch) -> list[QueueDepth]:
    """RabbitMQ as queue_depths() would report it: fixed numbers, whatever the real broker holds."""
    depths = [
        QueueDepth(name="default", ready=5, delayed=1, dead=2, consumers=3, running=1),
        QueueDepth(name="emails", ready=None, delayed=0, dead=None, consumers=None, running=0),
    ]
    monkeypatch.setattr(queues, "queue_depths", lambda: depths)
    return depths


@pytest.mark.usefixtures("ledger", "broker_depths")
def test_metrics__count_active_jobs_and_the_finished_ones_of_the_last_day() -> None:
    samples = scrape()

    assert FAMILIES <= set(samples)
    # Active statuses: every such job
    assert jobs(samples, Status.QUEUED, "jobs.probe") == 2
    assert jobs(samples, Status.RUNNING, "jobs.probe") == 1
    assert jobs(samples, Status.RETRYING, "jobs.send_email") == 1
    # Final statuses: the jobs finished in the last 24 h only (not the one 2 days ago)
    assert jobs(samples, Status.SUCCEEDED, "jobs.probe") == 2
    assert jobs(samples, Status.FAILED, "jobs.probe") == 1
    assert jobs(samples, Status.CANCELLED, "jobs.send_email") == 1
    # And every declared actor has every status, at 0 when it has no such job
    assert jobs(samples, Status.PENDING, "jobs.probe") == 0
    assert jobs(samples, Status.FAILED, "jobs.send_email") == 0
    assert len(samples["jobs_ledger_jobs"]) % len(Status.values) == 0
    assert samples["jobs_ledger_up"] == {(): 1.0}


@pytest.mark.usefixtures("broker_depths")
def test_metrics__queue_depths_from_rabbitmq_leave_out_what_it_does_not_know() -> None:
    samples = scrape()

    assert samples["jobs_broker_up"] == {(): 1.0}
    assert samples["jobs_queue_messages"] == {
        (("queue", "default"), ("state", "ready")): 5,
        (("queue", "default"), ("state", "delayed")): 1,
        (("queue", "default"), ("state", "dead")): 2,
        # emails: RabbitMQ does not have the queue yet, so only the ledger's delayed count
        (("queue", "emails"), ("state", "delayed")): 0,
    }
    assert per_queue(samples, "jobs_queue_consumers") == {"default": 3}
    assert per_queue(samples, "jobs_queue_running") == {"default": 1, "emails": 0}


def test_metrics__oldest_waiting_job_per_queue(job_factory: Callable[..., Job]) -> None:
    now = timezone.now()
    waiting = job_factory(status=Status.QUEUED, queue_name="reports")
    Job.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(minutes=2))
    job_factory(status=Status.QUEUED, queue_name="emails", scheduled_at=now + timedelta(hours=1))  # delayed
    job_factory(status=Status.RETRYING, queue_name="batch", next_retry_at=now - timedelta(seconds=300))

    oldest = per_queue(scrape(), "jobs_queue_oldest_waiting_seconds")

    assert oldest["reports"] == pytest.approx(120, abs=5)
    assert oldest["batch"] == pytest.approx(300, abs=5)
    # A queue with nothing due waits 0 s, so an alert on it resolves
    assert oldest["emails"] == 0
    assert oldest["default"] == 0


@pytest.mark.usefixtures("ledger")
def test_metrics__serve_the_ledger_when_rabbitmq_is_unreachable(settings: Any) -> None:
    settings.RABBITMQ_URL = CLOSED_RABBITMQ_URL

    samples = scrape()

    assert samples["jobs_broker_up"] == {(): 0.0}
    assert samples["jobs_ledger_up"] == {(): 1.0}
    assert jobs(samples, Status.QUEUED, "jobs.probe") == 2
    # Running jobs come from the ledger; RabbitMQ's counts are left out, not reported as 0
    assert per_queue(samples, "jobs_queue_running") == {"default": 1, "emails": 0, "reports": 0, "batch": 0}
    assert "jobs_queue_messages" not in samples
    assert "jobs_queue_consumers" not in samples


@pytest.mark.usefixtures("broker_depths")
def test_metrics__serve_the_broker_when_the_ledger_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def database_down(**kwargs: Any) -> dict[tuple[str, str], int]:
        raise OperationalError("connection refused")

    monkeypatch.setattr(stats, "jobs_per_status_and_actor", database_down)

    samples = scrape()

    assert samples["jobs_ledger_up"] == {(): 0.0}
    assert "jobs_ledger_jobs" not in samples
    assert samples["jobs_broker_up"] == {(): 1.0}
    assert per_queue(samples, "jobs_queue_consumers") == {"default": 3}


def test_metrics__read_the_real_rabbitmq() -> None:
    # The unit tier's RabbitMQ (settings.RABBITMQ_URL) is up; the queues may not exist there yet.
    samples = scrape()

    assert samples["jobs_broker_up"] == {(): 1.0}
    assert set(per_queue(samples, "jobs_queue_running")) == {"default", "emails", "reports", "batch"}


def test_metrics__route_and_openmetrics_negotiation() -> None:
    assert reverse("jobs:metrics") == METRICS

    response = Client().get(METRICS, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_metrics__only_read_methods() -> None:
    assert Client().post(METRICS).status_code == 405


def test_metrics__use_their_own_registry_not_the_global_one() -> None:
    assert metrics.REGISTRY is not prometheus_client.REGISTRY
    global_names = {family.name for family in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("jobs_") for name in global_names)


@pytest.mark.usefixtures("broker_depths")
def test_metrics__need_the_bearer_token_when_one_is_set(settings: Any) -> None:
    settings.JOBS_METRICS_TOKEN = "s3cret-token"

    missing = Client().get(METRICS)
    wrong = Client().get(METRICS, HTTP_AUTHORIZATION="Bearer nope")
    other_scheme = Client().get(METRICS, HTTP_AUTHORIZATION="Basic s3cret-token")

    for response in (missing, wrong, other_scheme):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"jobs_" not in response.content
    assert "jobs_ledger_up" in scrape(HTTP_AUTHORIZATION="Bearer s3cret-token")


@pytest.mark.usefixtures("broker_depths")
def test_metrics__are_open_without_a_token(settings: Any) -> None:
    settings.JOBS_METRICS_TOKEN = ""

    assert "jobs_ledger_up" in scrape()
