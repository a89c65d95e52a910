"""What operators do to jobs, from the admin or the API: retry a finished failure, cancel a waiting job."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.jobs.exceptions import InvalidTransition, JobNotFound
from apps.jobs.models import Job
from apps.jobs.services import submission, validation
from apps.jobs.services.ledger import job_cancel

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

#: Statuses a job can be retried from: it ended without doing its work.
RETRYABLE = (Job.Status.FAILED, Job.Status.CANCELLED)


def job_retry(
    *,
    job_id: UUID | str,
    requested_by: AbstractBaseUser | None = None,
    source: str = Job.Source.ADMIN,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    from_statuses: tuple[str, ...] = RETRYABLE,
) -> Job:
    """Run a failed or cancelled job again, as a new job linked to it (`retry_of`); its history stays.

    The new job keeps the first one's trigger (the object whose save started it). `from_statuses`
    widens what may run again (job_run_again: any finished job).

    `args` and `kwargs`, when given, replace the job's own (an operator's edit-and-retry); they are
    validated like any submission.

    Raises JobNotFound, or InvalidTransition when the job is not failed or cancelled, or was already
    retried by a job that has not finished yet (retrying twice would run it twice).

    The new job belongs to the user who submitted the first one, so they can follow it; an operator
    retrying someone else's job is named in the log. A job nobody submitted goes to `requested_by`.
    """
    with transaction.atomic():
        try:
            job = Job.objects.select_for_update().get(pk=job_id)
        except (Job.DoesNotExist, ValidationError, ValueError):
            raise JobNotFound(f"No job has the id {job_id}.", job_id=str(job_id)) from None
        if job.status not in from_statuses:
            allowed = " or ".join(from_statuses)
            raise InvalidTransition(
                f"Job {job.pk} is {job.status}; only {allowed} jobs can be retried.",
                job_id=str(job.pk),
                current=job.status,
                target="retry",
            )
        active = job.retries.filter(status__in=Job.ACTIVE_STATUSES).first()
        if active is not None:
            raise InvalidTransition(
                f"Job {job.pk} is already being retried as job {active.pk} ({active.status}).",
                job_id=str(job.pk),
                current=job.status,
                target="retry",
            )
        retry = submission.job_submit(
            actor=job.actor_name,
            args=job.args if args is None else args,
            kwargs=job.kwargs if kwargs is None else kwargs,
            queue=job.queue_name,
            priority=job.priority,
            # Only what a submitter may set: a recorded tick's scheduled_at would have it skipped.
            options={
                key: value
                for key, value in job.options.items()
                if key in validation.SUBMIT_OPTIONS and value is not None
            },
            requested_by=job.requested_by or requested_by,
            source=source,
            trigger=job.trigger,
            retry_of=job,
        )
    logger.info(
        "Job %s retried as job %s.",
        job.pk,
        retry.pk,
        extra={
            "action": "job_retried",
            "job_id": str(job.pk),
            "retry_id": str(retry.pk),
            "operator": getattr(requested_by, "username", None),
        },
    )
    return retry


def job_run_again(*, job_id: UUID | str, requested_by: AbstractBaseUser | None = None) -> Job:
    """Run any finished job again (a succeeded one too: "run again" on the object that triggered it),
    as a new job linked to it. Raises InvalidTransition for a job that has not finished."""
    return job_retry(job_id=job_id, requested_by=requested_by, from_statuses=Job.FINAL_STATUSES)


@dataclass
class BulkOutcome:
    """What a bulk action did: the jobs it changed (for a retry, the new jobs), and why it skipped others."""

    changed: list[Job] = field(default_factory=list)
    #: Why each job was left as it was (the service's refusal), by job id.
    skipped: dict[str, InvalidTransition | JobNotFound] = field(default_factory=dict)


def jobs_retry(
    *, job_ids: list[UUID | str], requested_by: AbstractBaseUser | None = None, source: str = Job.Source.ADMIN
) -> BulkOutcome:
    """job_retry for each job, each in its own transaction: one refusal does not undo the others."""
    outcome = BulkOutcome()
    for job_id in job_ids:
        try:
            outcome.changed.append(job_retry(job_id=job_id, requested_by=requested_by, source=source))
        except (InvalidTransition, JobNotFound) as exc:
            outcome.skipped[str(job_id)] = exc
    return outcome


def jobs_cancel(*, job_ids: list[UUID | str], requested_by: AbstractBaseUser | None = None) -> BulkOutcome:
    """job_cancel for each job: the waiting ones are cancelled, the others skipped with the reason."""
    outcome = BulkOutcome()
    for job_id in job_ids:
        try:
            outcome.changed.append(job_cancel(job_id=job_id, requested_by=requested_by))
        except (InvalidTransition, JobNotFound) as exc:
            outcome.skipped[str(job_id)] = exc
    return outcome
