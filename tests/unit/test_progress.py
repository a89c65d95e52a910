"""progress.report: nothing outside a job, a bounded number of writes inside one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from dramatiq.brokers.stub import StubBroker

from apps.jobs import progress, services, signals
from apps.jobs.models import Job
from tests.unit.conftest import run_all

#: Reports the test actor makes in a tight loop.
LOOP_REPORTS = 20_000


@dramatiq.actor(actor_name="tests.progress_loop", queue_name="default", max_retries=0)
def progress_loop(reports: int) -> dict[str, int]:
    """Report progress `reports` times as fast as possible; returns how many job UPDATEs that made."""
    with CaptureQueriesContext(connection) as queries:
        written = sum(bool(progress.report(done, reports, "looping")) for done in range(1, reports + 1))
    updates = [q for q in queries.captured_queries if q["sql"].startswith('UPDATE "jobs_job"')]
    return {"written": written, "updates": len(updates)}


@pytest.fixture
def progress_sends() -> Iterator[list[dict[str, Any]]]:
    sends: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        sends.append(kwargs)

    signals.job_progress.connect(receiver, weak=False, dispatch_uid="tests.progress_sends")
    yield sends
    signals.job_progress.disconnect(dispatch_uid="tests.progress_sends")


@pytest.mark.django_db
def test_progress_report__outside_a_job_does_nothing(
    job_factory: Any, django_assert_num_queries: Any, progress_sends: list[dict[str, Any]]
) -> None:
    # Given a running job, but no job running in this thread
    job = job_factory(status=Job.Status.RUNNING, attempts=1)

    # When progress is reported
    with django_assert_num_queries(0):
        written = progress.report(5, 10, "half way")

    # Then nothing was written
    assert written is False
    assert progress.current_attempt() is None
    job.refresh_from_db()
    assert job.progress_current is None
    assert job.progress_message == ""
    assert progress_sends == []


@pytest.mark.django_db(transaction=True)
def test_progress_report__tight_loop_writes_at_a_bounded_rate(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, progress_sends: list[dict[str, Any]]
) -> None:
    # Given a job that reports progress 20,000 times in a tight loop
    job = services.job_submit(actor="tests.progress_loop", args=[LOOP_REPORTS])

    # When the worker runs it
    run_all(stub_broker, stub_worker)

    # Then only a handful of reports became writes
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.last_error
    assert 1 <= job.result["written"] < 20
    assert 1 <= job.result["updates"] < 20
    assert job.result["updates"] == job.result["written"]
    assert 1 <= len(progress_sends) < 20
    assert len(progress_sends) == job.result["written"]

    # And the last one, which reached the total, was recorded
    assert (job.progress_current, job.progress_total) == (LOOP_REPORTS, LOOP_REPORTS)
    assert job.progress_message == "looping"
    assert progress_sends[-1]["current"] == LOOP_REPORTS
    assert progress_sends[-1]["job_id"] == job.pk


def test_check_stop__raises_shutdown_once_the_stopping_worker_interrupted_the_job() -> None:
    # A stopping worker asks an abandoned job to stop at its next progress report, a safe point
    # between two units of work, so it never finishes a unit and is then run again elsewhere.
    from types import SimpleNamespace

    from dramatiq.middleware.shutdown import Shutdown

    from apps.jobs import runtime

    delivery = runtime.delivery_open(SimpleNamespace(message_id="00000000-0000-0000-0000-000000000001"))
    runtime.delivery_started(delivery, 1)
    try:
        progress.check_stop()  # running normally: nothing happens
        delivery.interrupted = True
        with pytest.raises(Shutdown):
            progress.report(1, 10)
    finally:
        runtime.delivery_close()
