"""Operators' actions in Django's admin log: who, when, what, on which jobs (each job's History)."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.admin.models import CHANGE, LogEntry
from django.http import HttpRequest

from apps.jobs.models import Job


def log_job_action(request: HttpRequest, jobs: Iterable[Job], message: str) -> None:
    """One admin log entry per job, all saying `message` (the action with its before and after)."""
    jobs = list(jobs)
    if not jobs or request.user.pk is None:
        return
    LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=jobs,  # any iterable of model instances
        action_flag=CHANGE,
        change_message=message,
    )
