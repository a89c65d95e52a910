"""Reads shared by the admin, the commands and the actors."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from apps.jobs.exceptions import JobNotFound
from apps.jobs.models import Job, JobAttempt


def job_get(*, job_id: UUID | str) -> Job:
    """The job with this id, or JobNotFound."""
    try:
        return Job.objects.select_related("requested_by", "trigger_content_type").get(pk=job_id)
    except (Job.DoesNotExist, ValidationError, ValueError):
        raise JobNotFound(f"No job has the id {job_id}.", job_id=str(job_id)) from None


def job_attempts(*, job: Job) -> QuerySet[JobAttempt]:
    return job.attempt_set.order_by("number")


def job_list() -> QuerySet[Job]:
    """Jobs for listings: the columns operators scan, without the large JSON ones."""
    return Job.objects.select_related("requested_by").defer("args", "kwargs", "result", "last_traceback")


def user_sees_all_jobs(user: Any) -> bool:
    """Operators (the jobs.view_job permission) see every job; other users only their own."""
    return bool(user.is_authenticated and user.has_perm("jobs.view_job"))


def jobs_visible_to(user: Any) -> QuerySet[Job]:
    """The jobs `user` may see: every job for operators, else the jobs they submitted."""
    if user_sees_all_jobs(user):
        return Job.objects.all()
    if not user.is_authenticated:
        return Job.objects.none()
    return Job.objects.filter(requested_by=user)


def jobs_triggered_by(obj: Any) -> QuerySet[Job]:
    """The jobs whose trigger is `obj` (a model instance), newest first."""
    from django.contrib.contenttypes.models import ContentType

    return Job.objects.filter(
        trigger_content_type=ContentType.objects.get_for_model(obj), trigger_object_id=str(obj.pk)
    ).order_by("-created_at")
