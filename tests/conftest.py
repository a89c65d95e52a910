"""Fixtures shared by every tier: job and user factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apps.jobs.models import Job


@pytest.fixture
def job_factory(db: None) -> Callable[..., Job]:
    """Make a Job row directly (no publish), with keyword overrides."""

    def make(**overrides: Any) -> Job:
        fields: dict[str, Any] = {
            "actor_name": "jobs.probe",
            "queue_name": "default",
            "status": Job.Status.QUEUED,
            "max_retries": 3,
        }
        fields.update(overrides)
        return Job.objects.create(**fields)

    return make


@pytest.fixture
def admin_user(db: None) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser("admin", "admin@example.com", "admin-password")
