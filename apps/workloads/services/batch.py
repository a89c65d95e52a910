"""Processing a batch item by item, each outcome recorded, none failing the batch."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from uuid import UUID

import dramatiq
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError

from apps.jobs.exceptions import PermanentFailure, SoftTimeLimitExceeded, TransientFailure
from apps.workloads.models import BatchItemResult

logger = logging.getLogger(__name__)

#: Results written per INSERT.
BATCH_WRITE_SIZE = 200
#: Raised while handling an item but not the item's own fault: they stop the whole batch instead of
#: failing one item. The soft time limit must reach the actor so the job stops; a retry request or a
#: passing failure retries the job, which resumes after the items recorded so far.
STOP_BATCH_ERRORS = (SoftTimeLimitExceeded, dramatiq.Retry, TransientFailure)


def _validate_email(item: Any) -> dict[str, Any]:
    if not isinstance(item, str):
        raise ValueError(f"expected an address, got {type(item).__name__}")
    address = item.strip()
    try:
        validate_email(address)
    except ValidationError:
        raise ValueError(f"{address!r} is not a valid email address") from None
    local, _, domain = address.rpartition("@")
    return {"email": f"{local}@{domain.lower()}"}


def _word_count(item: Any) -> dict[str, Any]:
    if not isinstance(item, str):
        raise ValueError(f"expected text, got {type(item).__name__}")
    return {"words": len(item.split())}


def _square(item: Any) -> dict[str, Any]:
    if not isinstance(item, int | float) or isinstance(item, bool):
        raise ValueError(f"expected a number, got {item!r}")
    return {"square": item * item}


#: What process_batch can do to each item.
BATCH_OPERATIONS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "validate_email": _validate_email,
    "word_count": _word_count,
    "square": _square,
}


def batch_process(
    *,
    job_id: UUID | str | None,
    items: list[Any],
    operation: str,
    progress: Callable[[int, int, str], Any] | None = None,
) -> dict[str, int]:
    """Apply `operation` to every item and record each outcome; returns {processed, succeeded, failed}.

    A second run of the same job (a redelivery) skips the items the first run recorded.
    """
    handler = BATCH_OPERATIONS.get(operation)
    if handler is None:
        known = ", ".join(sorted(BATCH_OPERATIONS))
        raise PermanentFailure(f"Unknown batch operation {operation!r}; known: {known}.")
    done: set[int] = set()
    if job_id is not None:
        done = set(BatchItemResult.objects.filter(job_id=job_id).values_list("index", flat=True))
    pending: list[BatchItemResult] = []
    total = len(items)
    failed_here = 0
    for index, item in enumerate(items):
        if index in done:
            continue
        try:
            outcome = BatchItemResult(index=index, item=item, outcome="succeeded", result=handler(item))
        except DatabaseError:
            raise  # the database failed, not the item: nothing more can be recorded
        except STOP_BATCH_ERRORS:
            _write(pending)
            raise
        except Exception as exc:
            outcome = BatchItemResult(index=index, item=item, outcome="failed", error=str(exc)[:2000])
            failed_here += 1
        if job_id is not None:  # outside a job there is nothing to record the outcome on
            outcome.job_id = job_id
            pending.append(outcome)
        if len(pending) >= BATCH_WRITE_SIZE:
            _write(pending)
        if progress is not None:
            progress(index + 1, total, f"{index + 1} of {total} items")
    _write(pending)
    if job_id is None:
        # Nothing was recorded (no job to record it on): count this run's outcomes instead.
        return {"processed": total, "succeeded": total - failed_here, "failed": failed_here}
    failed = BatchItemResult.objects.filter(job_id=job_id, outcome="failed").count()
    return {"processed": total, "succeeded": total - failed, "failed": failed}


def _write(pending: list[BatchItemResult]) -> None:
    if pending:
        # ignore_conflicts: a concurrent duplicate run may have recorded the same item already.
        BatchItemResult.objects.bulk_create(pending, ignore_conflicts=True)
    pending.clear()
