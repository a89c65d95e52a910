"""The guarded transition every status change goes through, and the one way a job row is created."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.jobs.exceptions import InvalidTransition, JobNotFound
from apps.jobs.models import Job, JobEvent

logger = logging.getLogger("apps.jobs.services.ledger")

Status = Job.Status

ALLOWED_FROM: dict[str, set[str]] = {
    Status.PENDING: set(),  # only ever written by job creation
    Status.QUEUED: {Status.PENDING},  # the publish was confirmed
    Status.RUNNING: {Status.PENDING, Status.QUEUED, Status.RETRYING},  # a worker starts an attempt
    # The attempt failed, was interrupted by a shutdown, or its worker was lost; another is due.
    Status.RETRYING: {Status.RUNNING},
    Status.SUCCEEDED: {Status.RUNNING},
    # Retries exhausted or a permanent error; or dead-lettered before it ever started (expired).
    Status.FAILED: {Status.RUNNING, Status.PENDING, Status.QUEUED, Status.RETRYING},
    Status.CANCELLED: {Status.PENDING, Status.QUEUED, Status.RETRYING},
    Status.SKIPPED: {Status.PENDING, Status.QUEUED},  # an outdated tick, before its first attempt
}

#: Longest error message kept on a job (the traceback has the rest).
ERROR_MAX_CHARS = 2000


def transition(
    job_id: UUID | str,
    target: str,
    *,
    attempt: int | None = None,
    note: str = "",
    **fields: Any,
) -> Job:
    """Move the job to `target` under a row lock, or raise InvalidTransition.

    With `attempt`, the move only applies while that attempt is the job's latest one: an outcome
    reported by a worker that lost the job to a newer attempt is refused (fencing).
    """
    with transaction.atomic():
        try:
            job = Job.objects.select_for_update().get(pk=job_id)
        except (Job.DoesNotExist, ValidationError, ValueError):
            raise JobNotFound(f"No job has the id {job_id}.", job_id=str(job_id)) from None
        if job.status not in ALLOWED_FROM[target] or (attempt is not None and job.attempts != attempt):
            raise InvalidTransition(
                f"Job {job_id} cannot move from {job.status} (attempt {job.attempts}) to {target}.",
                job_id=job_id,
                current=job.status,
                target=target,
            )
        from_status = job.status
        job.status = target
        for name, value in fields.items():
            setattr(job, name, value)
        job.save(update_fields=["status", *fields, "updated_at"])
        JobEvent.objects.create(
            job=job,
            from_status=from_status,
            to_status=target,
            attempt=job.attempts,
            note=storable(note)[:255],
        )
    logger.info(
        "Job %s %s -> %s (attempt %d).",
        job.pk,
        from_status,
        target,
        job.attempts,
        extra={"action": f"job_{target}", "job_id": str(job.pk), "actor": job.actor_name},
    )
    return job


def try_transition(job_id: UUID | str, target: str, **kwargs: Any) -> Job | None:
    """_transition, where a refused move is the normal answer to a late or duplicate event."""
    try:
        return transition(job_id, target, **kwargs)
    except InvalidTransition as exc:
        # Normal under at-least-once delivery (a late confirm, a duplicate): not worth INFO per job.
        logger.debug("%s Ignored.", exc.message, extra={"action": "job_transition_ignored"})
        return None


def job_create(*, status: str = Status.PENDING, note: str = "", **fields: Any) -> Job:
    """Write a new job with its first event, in one transaction (the only way a Job row is created)."""
    with transaction.atomic():
        job = Job.objects.create(status=status, **fields)
        JobEvent.objects.create(job=job, from_status="", to_status=status, note=storable(note)[:255])
    return job


def storable(text: str) -> str:
    """`text` without NUL characters, which PostgreSQL refuses in text columns."""
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def error_text(error: BaseException) -> str:
    text = storable(str(error))
    return f"{type(error).__name__}: {text}"[:ERROR_MAX_CHARS] if text else type(error).__name__
