"""The ledger's Django signals, sent from worker threads as jobs start, progress, succeed and fail."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from apps.jobs import services
from apps.jobs.models import Job
from tests.unit.conftest import run_all

pytestmark = pytest.mark.django_db(transaction=True)

Status = Job.Status


# --- signals ---------------------------------------------------------------------------------------------


def test_signals__are_sent_for_start_progress_success_and_failure(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, signal_log: list[tuple[str, dict[str, Any]]]
) -> None:
    # Given a probe that sleeps long enough to report progress, and one that fails for good
    succeeding = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 600})
    failing = services.job_submit(actor="jobs.probe", kwargs={"permanent": True})

    # When the worker runs both
    run_all(stub_broker, stub_worker)

    # Then each job sent its signals, with their documented arguments
    def sent(name: str, job: Job) -> list[dict[str, Any]]:
        return [
            kwargs for signal_name, kwargs in signal_log if signal_name == name and _job_id(kwargs) == job.pk
        ]

    started = sent("job_started", succeeding)
    assert len(started) == 1
    assert started[0]["attempt"] == 1
    assert started[0]["job"].pk == succeeding.pk

    succeeded = sent("job_succeeded", succeeding)
    assert len(succeeded) == 1
    assert succeeded[0]["result"]["attempt"] == 1
    assert succeeded[0]["job"].status == Status.SUCCEEDED

    progress = sent("job_progress", succeeding)
    assert progress, "the probe reports progress while it sleeps"
    assert progress[-1]["current"] == 600
    assert progress[-1]["total"] == 600
    assert progress[-1]["message"] == "sleeping"

    assert len(sent("job_started", failing)) == 1
    failed = sent("job_failed", failing)
    assert len(failed) == 1
    assert failed[0]["job"].status == Status.FAILED
    assert sent("job_succeeded", failing) == []
    assert sent("job_failed", succeeding) == []


def _job_id(kwargs: dict[str, Any]) -> Any:
    """The id of the job a signal is about: job_progress sends job_id, the others the job."""
    return kwargs["job"].pk if "job" in kwargs else uuid.UUID(str(kwargs["job_id"]))
