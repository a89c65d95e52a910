"""What the probe job records."""

from __future__ import annotations

from uuid import UUID

from apps.jobs.models import ProbeRun


def probe_run_record(*, job_id: UUID | str | None, attempt: int) -> None:
    """Count one completed run of a probe job (nothing outside a job)."""
    if job_id is not None:
        ProbeRun.objects.create(job_id=job_id, attempt=attempt)
