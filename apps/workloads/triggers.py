"""Model-save triggers: saving a new object submits a job for it, once, after the save commits."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save

from apps.jobs import services
from apps.jobs.models import Job
from apps.workloads.models import Report


def _report_created(
    sender: type[Report], instance: Report, created: bool, raw: bool = False, **_: Any
) -> None:
    if not created or raw:
        return
    # The job is written in the saving transaction: a rolled-back save leaves neither row, and the
    # message is only published once both are committed. The key makes a repeated signal harmless.
    job = services.job_submit(
        actor="jobs.generate_report",
        args=[instance.pk],
        source=Job.Source.TRIGGER,
        trigger=instance,
        requested_by=instance.created_by,
        idempotency_key=f"report:{instance.pk}:{instance.created_at.timestamp()}",
    )
    Report.objects.filter(pk=instance.pk).update(job=job)
    instance.job = job


def connect() -> None:
    post_save.connect(_report_created, sender=Report, dispatch_uid="workloads.report_created")
