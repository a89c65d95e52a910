"""The relay: publishes jobs whose message is not in RabbitMQ, and recovers jobs whose worker vanished."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import dramatiq
from django.conf import settings
from django.utils import timezone

from apps.jobs import runtime
from apps.jobs.models import Job, JobAttempt
from apps.jobs.services import ledger
from apps.jobs.services.submission import actor_max_retries, delay_until, job_send

logger = logging.getLogger(__name__)

#: Seconds a relay owns a job it is publishing; another relay may take it over after that.
RELAY_CLAIM_S = 60
#: Seconds before a failed relay publish is tried again.
RELAY_RETRY_S = 5
#: Statuses whose message the relay may (re)publish: the job waits for a worker.
RELAYABLE = (Job.Status.PENDING, Job.Status.QUEUED, Job.Status.RETRYING)


def job_record_message(
    *, message: dramatiq.Message, status: str = Job.Status.QUEUED, relay_after: Any = None
) -> Job:
    """The ledger row of a message (written if it was sent without job_submit)."""
    options = dict(message.options)
    broker = dramatiq.get_broker()
    try:
        max_retries = actor_max_retries(broker.get_actor(message.actor_name), options)
    except dramatiq.errors.ActorNotFound:
        max_retries = 0
    return ledger.job_record_sent(
        job_id=message.message_id,
        actor_name=message.actor_name,
        queue_name=dramatiq.common.q_name(message.queue_name),
        args=list(message.args),
        kwargs=dict(message.kwargs),
        options=options,
        max_retries=max_retries,
        status=status,
        relay_after=relay_after,
    )


def job_hold_for_relay(*, message: dramatiq.Message, delay_ms: int | None) -> Job:
    """Keep a message RabbitMQ did not take (or should not hold: a long delay) in the ledger for the relay."""
    due = timezone.now() + timedelta(milliseconds=delay_ms or 0)
    relay_after = due - timedelta(milliseconds=settings.JOBS_MAX_BROKER_DELAY_MS) if delay_ms else due
    job = job_record_message(message=message, status=Job.Status.PENDING, relay_after=relay_after)
    if job.status == Job.Status.PENDING and job.scheduled_at is None and delay_ms:
        Job.objects.filter(pk=job.pk).update(scheduled_at=due)
    Job.objects.filter(pk=job.pk, status__in=RELAYABLE).update(relay_after=relay_after)
    logger.warning(
        "Job %s is held in the ledger; the relay publishes it at %s.",
        job.pk,
        relay_after,
        extra={"action": "job_held_for_relay", "job_id": str(job.pk)},
    )
    return job


def jobs_relay_due(*, limit: int = 200) -> int:
    """Publish every job whose relay time has come; returns how many were published."""
    now = timezone.now()
    due = list(
        Job.objects.filter(relay_after__lte=now, status__in=RELAYABLE)
        .order_by("relay_after")
        .values_list("pk", "relay_after")[:limit]
    )
    published = 0
    for job_id, relay_after in due:
        claim = now + timedelta(seconds=RELAY_CLAIM_S)
        # The claim makes one relay publish a job at a time (a second publish would be harmless).
        if not Job.objects.filter(pk=job_id, relay_after=relay_after).update(relay_after=claim):
            continue
        if _relay_one(job_id, claim):
            published += 1
    return published


def _relay_one(job_id: Any, claim: Any) -> bool:
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


def jobs_recover_orphans(*, limit: int = 100) -> int:
    """Retry or fail running jobs whose worker stopped heartbeating; returns how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOBS_LEASE_S)
    recovered = 0
    stale = Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=cutoff).values_list(
        "pk", "attempts"
    )
    for job_id, attempt in list(stale[:limit]):
        worker = (
            JobAttempt.objects.filter(job_id=job_id, number=attempt)
            .values_list("worker_host", "worker_pid")
            .first()
        )
        if worker and runtime.process_is_alive(*worker):
            continue  # a live process on this host: slow, not lost
        if ledger.job_recover_orphan(job_id=job_id, attempt=attempt) is not None:
            recovered += 1
    return recovered
