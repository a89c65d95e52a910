"""Ledger rows for messages sent without job_submit: actor.send(), schedule ticks, held publishes."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import dramatiq
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from apps.jobs.models import Job
from apps.jobs.services import ledger
from apps.jobs.services.submission import actor_max_retries

logger = logging.getLogger(__name__)

#: Message options that describe one delivery, not the job: never stored or re-sent.
DELIVERY_OPTIONS = frozenset({"eta", "retries", "traceback", "requeue_timestamp", "redis_message_id"})
#: Statuses whose message the relay may (re)publish: the job waits for a worker.
RELAYABLE = (Job.Status.PENDING, Job.Status.QUEUED, Job.Status.RETRYING)


def job_record_message(
    *, message: dramatiq.Message, status: str = Job.Status.QUEUED, relay_after: Any = None
) -> Job:
    """The ledger row of a message, written if it was sent without job_submit (the first writer wins)."""
    existing = Job.objects.filter(pk=message.message_id).first()
    if existing is not None:
        return existing
    options = dict(message.options)
    try:
        max_retries = actor_max_retries(dramatiq.get_broker().get_actor(message.actor_name), options)
    except dramatiq.errors.ActorNotFound:
        max_retries = 0
    now = timezone.now()
    try:
        return ledger.job_create(
            id=message.message_id,
            status=status,
            note="recorded from broker",
            actor_name=message.actor_name,
            queue_name=dramatiq.common.q_name(message.queue_name),
            args=list(message.args),
            kwargs=dict(message.kwargs),
            options={key: value for key, value in options.items() if key not in DELIVERY_OPTIONS},
            priority=options.get("broker_priority") or 0,
            max_retries=max_retries,
            source=Job.Source.SCHEDULE if "scheduled_at" in options else Job.Source.CODE,
            enqueued_at=now if status == Job.Status.QUEUED else None,
            relay_after=relay_after,
        )
    except IntegrityError:
        # The producer and the worker both record an unknown message; the first one wins.
        return Job.objects.get(pk=message.message_id)


def job_hold_for_relay(*, message: dramatiq.Message, delay_ms: int | None) -> Job:
    """Keep a message RabbitMQ did not take (or should not hold: a long delay) in the ledger for the relay."""
    due = timezone.now() + timedelta(milliseconds=delay_ms or 0)
    relay_after = due - timedelta(milliseconds=settings.JOBS_MAX_BROKER_DELAY_MS) if delay_ms else due
    job = job_record_message(message=message, status=Job.Status.PENDING, relay_after=relay_after)
    updates: dict[str, Any] = {"relay_after": relay_after}
    if job.status == Job.Status.PENDING and job.scheduled_at is None and delay_ms:
        updates["scheduled_at"] = due
    Job.objects.filter(pk=job.pk, status__in=RELAYABLE).update(**updates)
    logger.warning(
        "Job %s is held in the ledger; the relay publishes it at %s.",
        job.pk,
        relay_after,
        extra={"action": "job_held_for_relay", "job_id": str(job.pk)},
    )
    return job
