"""Jobs that wait for a message: queued, cancelled, skipped, or failed before any attempt started."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.jobs.models import Job
from apps.jobs.services.ledger import transitions

logger = logging.getLogger("apps.jobs.services.ledger")

Status = Job.Status


def job_mark_queued(*, job_id: UUID | str) -> Job | None:
    """Record that RabbitMQ confirmed the job's first message; a worker may have started it already."""
    now = timezone.now()
    job = transitions.try_transition(job_id, Status.QUEUED, enqueued_at=now, relay_after=None)
    if job is None:
        # A worker was faster than this confirmation: keep everything else (a retry may be waiting
        # for the relay by now), only record when the job was first queued.
        Job.objects.filter(pk=job_id, enqueued_at__isnull=True).update(enqueued_at=now)
    return job


def job_fail_undelivered(*, job_id: UUID | str, reason: str) -> Job | None:
    """Record that the job's message was dead-lettered before any attempt started (e.g. too old).

    Only a job that still waits for a message is failed: a late copy of a job that runs, or ran,
    elsewhere is just a duplicate, whatever happened to it.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status not in (Status.PENDING, Status.QUEUED, Status.RETRYING):
            return None
        return transitions.transition(
            job_id,
            Status.FAILED,
            note=reason,
            finished_at=timezone.now(),
            last_error=transitions.storable(reason)[: transitions.ERROR_MAX_CHARS],
            relay_after=None,
        )


def job_skip(*, job_id: UUID | str, reason: str) -> Job | None:
    """Record that the job was deliberately not run (an outdated schedule tick)."""
    return transitions.try_transition(job_id, Status.SKIPPED, note=reason, finished_at=timezone.now())


def job_cancel(*, job_id: UUID | str, requested_by: Any = None) -> Job:
    """Cancel a job that has not started (pending, queued or retrying): it never runs.

    Its message may be in RabbitMQ already: a worker that receives it drops it, as the job is final.
    Raises JobNotFound, or InvalidTransition for a job that runs or has finished. Who cancelled it
    is kept in the event's note.
    """
    who = getattr(requested_by, "username", "") if requested_by is not None else ""
    return transitions.transition(
        job_id,
        Status.CANCELLED,
        note=f"cancelled by {who}" if who else "cancelled",
        finished_at=timezone.now(),
        relay_after=None,
    )


def job_record_dead_letter(
    *, job_id: UUID | str | None, actor_name: str, queue_name: str, reason: str, payload: Any = None
) -> Job:
    """Show a dead-lettered message no worker could run (unknown actor, undecodable) as a failed job.

    A job already in the ledger is failed only while it waits for a message (this copy was its
    message); one that runs or ran elsewhere is left alone: this was a duplicate.
    """
    reason = transitions.storable(reason)
    job = None
    if not job_id or not Job.objects.filter(pk=job_id).exists():
        try:
            job = transitions.job_create(
                **({"id": job_id} if job_id else {}),
                status=Status.FAILED,
                note=reason,
                actor_name=actor_name[:200],
                queue_name=queue_name[:100],
                args=[] if payload is None else [transitions.storable(str(payload))],
                finished_at=timezone.now(),
                last_error=reason[: transitions.ERROR_MAX_CHARS],
            )
        except IntegrityError:
            pass  # its producer recorded it a moment ago (after_enqueue races the worker's consumer)
    if job is None:
        assert job_id is not None, "only a row with the message's id can exist already"
        job = job_fail_undelivered(job_id=job_id, reason=reason) or Job.objects.get(pk=job_id)
    logger.error(
        "Dead-lettered %s: %s", job.pk, reason, extra={"action": "job_dead_lettered", "job_id": str(job.pk)}
    )
    return job
