"""The example workloads' REST endpoints (emails, reports) and the actors they offer to POST /api/jobs/."""

from __future__ import annotations


def register() -> None:
    """Offer the example actors to the jobs API, each with the serializer of its arguments."""
    from apps.jobs.api import registry
    from apps.workloads import actors
    from apps.workloads.api import inputs

    registry.expose(actors.probe, inputs.ProbeInput)
    registry.expose(actors.send_email, inputs.SendEmailInput)
    registry.expose(actors.process_batch, inputs.ProcessBatchInput)
