"""The outbox relay: publishes every job the ledger says waits for a message that RabbitMQ does not have.

The rule it keeps: whenever a job waits for a message (pending, queued or retrying), either
RabbitMQ holds one, or `relay_after` says when the relay publishes one. A second copy is
harmless (a worker drops a duplicate delivery); a missing one would lose the job.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from apps.jobs.models import Job
from apps.jobs.services import ledger
from apps.jobs.services.recording import RELAYABLE
from apps.jobs.services.submission import delay_until, job_send

logger = logging.getLogger(__name__)

#: Seconds a relay owns a job it is publishing; another relay may take it over after that.
RELAY_CLAIM_S = 60
#: Seconds before a failed relay publish is tried again.
RELAY_RETRY_S = 5


def jobs_relay_due(*, limit: int = 200) -> int:
    """Publish every job whose relay time has come; returns how many were published."""
    due = list(
        Job.objects.filter(relay_after__lte=timezone.now(), status__in=RELAYABLE)
        .order_by("relay_after")
        .values_list("pk", "relay_after")[:limit]
    )
    return sum(
        job_relay(job_id=job_id, relay_after=relay_after)
        for job_id, relay_after in due
        if relay_after is not None  # never: the filter leaves no NULL
    )


def job_relay(*, job_id: Any, relay_after: datetime) -> bool:
    """Publish one job's message now, if its relay time is still `relay_after`; True once confirmed.

    The time is swapped for a claim first, so one relay publishes a job at a time; the claim is
    cleared only after RabbitMQ confirmed the message, and kept (to retry) when it did not.
    """
    claim = timezone.now() + timedelta(seconds=RELAY_CLAIM_S)
    if not Job.objects.filter(pk=job_id, relay_after=relay_after, status__in=RELAYABLE).update(
        relay_after=claim
    ):
        return False
    job = Job.objects.get(pk=job_id)
    due_at = job.scheduled_at if job.status == Job.Status.PENDING else job.next_retry_at
    if not job_send(job, delay_ms=delay_until(due_at)):
        retry_at = timezone.now() + timedelta(seconds=RELAY_RETRY_S)
        Job.objects.filter(pk=job_id, relay_after=claim).update(relay_after=retry_at)
        return False
    if job.status == Job.Status.PENDING:
        ledger.job_mark_queued(job_id=job_id)
    Job.objects.filter(pk=job_id, relay_after=claim).update(relay_after=None)
    logger.info("Relay published job %s.", job_id, extra={"action": "job_relayed", "job_id": str(job_id)})
    return True
