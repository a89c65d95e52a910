"""batch_process: every item's outcome recorded, none failing the batch; the soft time limit stops it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from django.db import OperationalError

from apps.jobs.exceptions import SoftTimeLimitExceeded, TransientFailure
from apps.jobs.models import Job
from apps.workloads import services
from apps.workloads.models import BatchItemResult


@pytest.mark.django_db
def test_batch_process__outside_a_job_counts_outcomes_without_recording_them() -> None:
    items = ["ada@example.com", "broken@", 7]

    summary = services.batch_process(job_id=None, items=items, operation="validate_email")

    assert summary == {"processed": 3, "succeeded": 1, "failed": 2}
    assert BatchItemResult.objects.count() == 0


@pytest.mark.django_db
def test_batch_process__soft_time_limit_stops_the_batch_instead_of_failing_an_item(
    job_factory: Callable[..., Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an operation that reaches the job's soft time limit on the third item
    def slow(item: Any) -> dict[str, Any]:
        if item == 3:
            raise SoftTimeLimitExceeded()
        return {"item": item}

    monkeypatch.setitem(services.BATCH_OPERATIONS, "slow", slow)
    job = job_factory(actor_name="jobs.process_batch", status=Job.Status.RUNNING)

    # When the batch runs, the limit reaches the caller (the actor), not an item's result
    with pytest.raises(SoftTimeLimitExceeded):
        services.batch_process(job_id=job.pk, items=[1, 2, 3, 4, 5], operation="slow")

    # And the items done before it are recorded, so a retry resumes after them; no item failed
    results = BatchItemResult.objects.filter(job=job).order_by("index")
    assert [(r.index, r.outcome) for r in results] == [(0, "succeeded"), (1, "succeeded")]


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(dramatiq.Retry(delay=1000), id="retry-request"),
        pytest.param(TransientFailure("the upstream is down"), id="transient-failure"),
        pytest.param(OperationalError("the database went away"), id="database-error"),
    ],
)
@pytest.mark.django_db
def test_batch_process__errors_that_are_not_the_items_own_stop_the_batch(
    job_factory: Callable[..., Job], monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def failing(item: Any) -> dict[str, Any]:
        raise error

    monkeypatch.setitem(services.BATCH_OPERATIONS, "failing", failing)
    job = job_factory(actor_name="jobs.process_batch", status=Job.Status.RUNNING)

    with pytest.raises(type(error)):
        services.batch_process(job_id=job.pk, items=[1, 2], operation="failing")

    assert not BatchItemResult.objects.filter(job=job, outcome="failed").exists()
