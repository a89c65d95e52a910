"""The jobs_* management commands of the jobs system: submit, show."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from io import StringIO

import dramatiq
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from apps.jobs.models import Job, JobAttempt
from tests.unit.conftest import run_all


def _call(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- jobs_submit ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_jobs_submit__prints_the_id_of_the_new_job(stub_broker: StubBroker) -> None:
    output = _call("jobs_submit", "probe", "--kwargs", '{"sleep_ms": 1}')

    job_id = uuid.UUID(output.strip())
    job = Job.objects.get(pk=job_id)
    assert job.actor_name == "jobs.probe"
    assert job.kwargs == {"sleep_ms": 1}
    assert job.args == []


@pytest.mark.django_db
def test_jobs_submit__passes_args_queue_priority_options_and_key(stub_broker: StubBroker) -> None:
    first = _call(
        "jobs_submit",
        "jobs.process_batch",
        "--args",
        '[["a@example.com"]]',
        "--queue",
        "default",
        "--priority",
        "4",
        "--options",
        '{"max_retries": 0}',
        "--idempotency-key",
        "batch-1",
    )
    second = _call("jobs_submit", "process_batch", "--idempotency-key", "batch-1")

    job = Job.objects.get()
    assert first.strip() == second.strip() == str(job.pk)
    assert (job.args, job.queue_name, job.priority, job.max_retries) == ([["a@example.com"]], "default", 4, 0)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        pytest.param("--args", "[1, 2", id="args-bad-json"),
        pytest.param("--args", '{"a": 1}', id="args-not-a-list"),
        pytest.param("--kwargs", "{sleep_ms: 1}", id="kwargs-bad-json"),
        pytest.param("--kwargs", "[1]", id="kwargs-not-an-object"),
        pytest.param("--options", "nope", id="options-bad-json"),
    ],
)
@pytest.mark.django_db
def test_jobs_submit__bad_json_raises_command_error_naming_the_option(
    stub_broker: StubBroker, option: str, value: str
) -> None:
    with pytest.raises(CommandError, match=f"^{option} "):
        _call("jobs_submit", "probe", option, value)

    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_jobs_submit__unknown_actor_raises_command_error(stub_broker: StubBroker) -> None:
    with pytest.raises(CommandError, match=r"jobs\.no_such_actor"):
        _call("jobs_submit", "no_such_actor")

    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_jobs_submit__invalid_option_raises_command_error(stub_broker: StubBroker) -> None:
    with pytest.raises(CommandError, match="priority"):
        _call("jobs_submit", "probe", "--priority", "99")

    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_jobs_submit__wait_prints_the_finished_job(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    output = _call("jobs_submit", "probe", "--kwargs", '{"sleep_ms": 1}', "--wait", "10")

    data = json.loads(output)
    assert data["status"] == Job.Status.SUCCEEDED
    assert data["result"]["attempt"] == 1
    assert [a["outcome"] for a in data["attempt_history"]] == [JobAttempt.Outcome.SUCCEEDED]


@pytest.mark.django_db(transaction=True)
def test_jobs_submit__wait_raises_command_error_when_the_job_fails(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    with pytest.raises(CommandError, match="ended failed"):
        _call("jobs_submit", "probe", "--kwargs", '{"permanent": true}', "--wait", "10")

    run_all(stub_broker, stub_worker)
    assert Job.objects.get().status == Job.Status.FAILED


# --- jobs_show ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_jobs_show__prints_the_job_with_its_attempt_history(job_factory: Callable[..., Job]) -> None:
    # Given a job that failed once and then succeeded
    now = timezone.now()
    job = job_factory(status=Job.Status.SUCCEEDED, attempts=2, result={"ok": True}, finished_at=now)
    JobAttempt.objects.create(
        job=job,
        number=1,
        worker_host="host-a",
        worker_pid=11,
        started_at=now,
        finished_at=now,
        outcome=JobAttempt.Outcome.RETRIED,
        error_class="apps.jobs.exceptions.TransientFailure",
        error_message="try later",
    )
    JobAttempt.objects.create(
        job=job, number=2, worker_host="host-b", worker_pid=22, started_at=now, outcome="succeeded"
    )

    # When it is shown
    data = json.loads(_call("jobs_show", str(job.pk)))

    # Then the JSON has the job and each attempt, in order
    assert data["id"] == str(job.pk)
    assert data["actor"] == "jobs.probe"
    assert data["status"] == "succeeded"
    assert data["attempts"] == 2
    assert data["result"] == {"ok": True}
    history = data["attempt_history"]
    assert [(a["number"], a["outcome"], a["worker"]) for a in history] == [
        (1, "retried", "host-a:11"),
        (2, "succeeded", "host-b:22"),
    ]
    assert history[0]["error_class"] == "apps.jobs.exceptions.TransientFailure"
    assert history[0]["error_message"] == "try later"
    assert history[1]["error_class"] is None


@pytest.mark.parametrize("job_id", [pytest.param(str(uuid.uuid4()), id="unknown-uuid"), "not-a-uuid"])
@pytest.mark.django_db
def test_jobs_show__unknown_id_raises_command_error(job_id: str) -> None:
    with pytest.raises(CommandError, match="No job has the id"):
        _call("jobs_show", job_id)
