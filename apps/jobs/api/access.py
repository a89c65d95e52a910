"""Who may do what through the API: permissions and the submission throttle."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.throttling import UserRateThrottle

from apps.jobs import selectors


class SeesAllJobs(BasePermission):
    """Operators only (the jobs.view_job permission): for views over every user's jobs."""

    message = "This needs the permission to view all jobs."

    def has_permission(self, request: Request, view: Any) -> bool:
        return selectors.user_sees_all_jobs(request.user)


def may_act_on(user: Any, job: Any, permission: str) -> bool:
    """A user acts on the jobs they submitted; on others' only with `permission` (jobs.retry_job...)."""
    return bool(
        (job.requested_by_id is not None and job.requested_by_id == user.pk) or user.has_perm(permission)
    )


class SubmitThrottle(UserRateThrottle):
    """Requests that create or change jobs, per user (REST_FRAMEWORK's "submit" rate)."""

    scope = "submit"


def requester(request: Request) -> AbstractBaseUser:
    """The user of a request the permissions let through (never anonymous: IsAuthenticated)."""
    user = request.user
    assert isinstance(user, AbstractBaseUser), "the view's permissions require a signed-in user"
    return user
