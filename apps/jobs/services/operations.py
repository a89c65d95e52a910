"""What operators do to jobs, from the admin or the API: retry a finished failure, cancel a waiting job."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.jobs.exceptions import InvalidTransition, JobNotFound
from apps.jobs.models import Job
from apps.jobs.services import submission, validation

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)

#: Statuses a job can be retried from: it ended without doing its work.
RETRYABLE = (Job.Status.FAILED, Job.Status.CANCELLED)


def job_retry(
    *, job_id: UUID | str, requested_by: AbstractBaseUser | None = None, source: str = Job.Source.ADMIN
) -> Job:
    """Run a failed or cancelled job again, as a new job linked to it (`retry_of`); its history stays.

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
        if job.status not in RETRYABLE:
            raise InvalidTransition(
                f"Job {job.pk} is {job.status}; only failed or cancelled jobs can be retried.",
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
            args=job.args,
            kwargs=job.kwargs,
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
