"""Submitting jobs: validate, write the row in the caller's transaction, publish after commit."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from uuid import UUID

import dramatiq
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, models, transaction
from django.utils import timezone
from dramatiq.errors import DramatiqError
from dramatiq.middleware import Retries

from apps.jobs import runtime
from apps.jobs.exceptions import (
    InvalidJobOptions,
    UnknownQueue,
)
from apps.jobs.models import Job
from apps.jobs.services import ledger, validation

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)


def job_submit(
    *,
    actor: str | dramatiq.Actor,
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int = 0,
    delay: int | timedelta | None = None,
    options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    requested_by: AbstractBaseUser | None = None,
    source: str = Job.Source.CODE,
    trigger: models.Model | None = None,
    retry_of: Job | None = None,
) -> Job:
    """Write a job in the caller's transaction and publish it to RabbitMQ once that commits.

    Returns the new job; or, when `idempotency_key` was used before, or the actor is declared
    unique and an equal job is still pending, queued or running, that existing job. Raises
    UnknownActor, UnknownQueue, InvalidJobArguments (MessageTooLarge among them) or InvalidJobOptions,
    whose `extra["field"]` names the culprit, and writes nothing when the request is wrong:

    - `args` and `kwargs` must be JSON without NUL characters (PostgreSQL cannot store them), and the
      message they make at most settings.JOBS_MAX_MESSAGE_BYTES (RabbitMQ refuses larger ones).
    - `delay` is in milliseconds (or a timedelta), at most settings.JOBS_MAX_DELAY_MS.
    - `options` is a dict of SUBMIT_OPTIONS; a value of None is refused, not read as "the default"
      (leave the option out for that). max_retries is at most MAX_RETRIES_PER_JOB; min_backoff and
      max_backoff at most settings.RETRY_MAX_BACKOFF_MS (the longest retry wait of any job);
      time_limit and soft_time_limit from 1 ms to settings.JOBS_MAX_TIME_LIMIT_MS (under RabbitMQ's
      consumer_timeout; a soft limit at or past the hard one is allowed and means "no soft limit");
      max_age at most settings.JOBS_MAX_DELAY_MS; notify_shutdown a bool; on_success and on_failure
      registered actors.
    - `idempotency_key` is a string of at most 255 characters without NUL; "" means no key.

    `retry_of` links the new job to the failed or cancelled one it runs again (see job_retry).
    """
    broker = dramatiq.get_broker()
    actor_obj = validation.actor_get(broker, actor)
    queue_name = queue or actor_obj.queue_name
    if queue_name not in broker.get_declared_queues():
        known = ", ".join(sorted(broker.get_declared_queues()))
        raise UnknownQueue(
            f"Unknown queue {queue_name!r}; known queues: {known}.", queue=queue_name, field="queue"
        )
    args, kwargs = validation.json_arguments(actor_obj.actor_name, args, kwargs or {})
    options = validation.valid_options(actor_obj, {} if options is None else options)
    priority = validation.valid_priority(priority)
    delay_ms = validation.valid_delay_ms(delay)
    idempotency_key = validation.valid_idempotency_key(idempotency_key)
    if source not in Job.Source.values:
        raise InvalidJobOptions(f"Unknown source {source!r}.", source=source, field="source")
    # The message the publish will send (its id and timestamp have fixed lengths, so its size is known).
    unsaved = Job(
        actor_name=actor_obj.actor_name,
        queue_name=queue_name,
        args=args,
        kwargs=kwargs,
        options=options,
        priority=priority,
        created_at=timezone.now(),
    )
    validation.message_check_size(job_message(unsaved))

    if idempotency_key:
        existing = Job.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    unique_key = _unique_key(actor_obj, args, kwargs)
    if unique_key:
        existing = Job.objects.filter(unique_key=unique_key, status__in=Job.ACTIVE_STATUSES).first()
        if existing is not None:
            return existing

    now = timezone.now()
    scheduled_at = now + timedelta(milliseconds=delay_ms) if delay_ms else None
    fields = {
        "actor_name": actor_obj.actor_name,
        "queue_name": queue_name,
        "args": args,
        "kwargs": kwargs,
        "options": options,
        "priority": priority,
        "max_retries": _max_retries(broker, actor_obj, options),
        "scheduled_at": scheduled_at,
        # The after-commit publish below normally clears this; if it never happens, the relay does it.
        "relay_after": relay_time(now=now, due=scheduled_at),
        "requested_by": requested_by if requested_by and requested_by.is_authenticated else None,
        "source": source,
        "idempotency_key": idempotency_key or None,
        "unique_key": unique_key,
    }
    if trigger is not None:
        fields["trigger_content_type"] = ContentType.objects.get_for_model(trigger)
        fields["trigger_object_id"] = str(trigger.pk)
    if retry_of is not None:
        fields["retry_of"] = retry_of
        if trigger is None:  # a retry belongs to what its first run was for
            fields["trigger_content_type_id"] = retry_of.trigger_content_type_id
            fields["trigger_object_id"] = retry_of.trigger_object_id
    try:
        with transaction.atomic():  # a savepoint: the caller's transaction survives a lost race
            job = ledger.job_create(status=Job.Status.PENDING, note=source, **fields)
    except IntegrityError:
        # A concurrent submit with the same key committed first: answer with its job.
        existing = _existing_for_keys(idempotency_key, unique_key)
        if existing is None:
            raise
        return existing
    logger.info(
        "Job %s submitted: %s on %s.",
        job.pk,
        job.actor_name,
        job.queue_name,
        extra={"action": "job_submitted", "job_id": str(job.pk), "actor": job.actor_name},
    )
    # robust: the row is committed whatever happens here; an unpublished job stays pending.
    transaction.on_commit(partial(job_publish, job_id=job.pk), robust=True)
    return job


def job_publish(*, job_id: UUID | str) -> Job | None:
    """Send a pending job's message to RabbitMQ and mark it queued once the broker confirms.

    A broker error leaves the job pending and is logged, not raised: the row is committed, and a
    later publish of the same message id is harmless (workers drop a duplicate delivery).
    """
    job = Job.objects.filter(pk=job_id, status=Job.Status.PENDING).first()
    if job is None:
        return None
    delay_ms = delay_until(job.scheduled_at)
    if delay_ms and delay_ms > settings.JOBS_MAX_BROKER_DELAY_MS:
        return None  # a long delay waits in the database; the relay publishes it when due
    if not job_send(job, delay_ms=delay_ms):
        return None
    return ledger.job_mark_queued(job_id=job.pk)


def job_send(job: Job, *, delay_ms: int | None) -> bool:
    """Publish the job's message, confirmed by RabbitMQ; False (logged) when it was not taken."""
    message = job_message(job)
    try:
        with runtime.ledger_publish(message.message_id):
            dramatiq.get_broker().enqueue(message, delay=delay_ms)
    except DramatiqError as exc:
        logger.warning(
            "Publishing job %s failed (%s); the relay tries again.",
            job.pk,
            exc,
            extra={"action": "job_publish_failed", "job_id": str(job.pk)},
        )
        return False
    return True


def relay_time(*, now: datetime, due: datetime | None) -> datetime:
    """When the relay should publish a job due at `due` if nobody else has by then."""
    grace = now + timedelta(seconds=settings.JOBS_RELAY_GRACE_S)
    if due is None:
        return grace
    return max(grace, due - timedelta(milliseconds=settings.JOBS_MAX_BROKER_DELAY_MS))


def delay_until(due: datetime | None) -> int | None:
    """Milliseconds from now until `due`, or None when it is due already."""
    if due is None:
        return None
    return max(0, int((due - timezone.now()).total_seconds() * 1000)) or None


def job_message(job: Job) -> dramatiq.Message:
    """The Dramatiq message that runs `job` (same id, so every broker event finds the row)."""
    options = dict(job.options)
    if job.priority:
        options["broker_priority"] = job.priority
    return dramatiq.Message(
        queue_name=job.queue_name,
        actor_name=job.actor_name,
        args=tuple(job.args),
        kwargs=dict(job.kwargs),
        options=options,
        message_id=str(job.pk),
        message_timestamp=int(job.created_at.timestamp() * 1000),
    )


def actor_max_retries(actor: dramatiq.Actor, options: dict[str, Any]) -> int:
    """The retries a message of `actor` with `options` gets, as the Retries middleware decides them."""
    return _max_retries(actor.broker, actor, options)


def _max_retries(broker: dramatiq.Broker, actor: dramatiq.Actor, options: dict[str, Any]) -> int:
    if "max_retries" in options:
        return options["max_retries"]
    if "max_retries" in actor.options:
        return actor.options["max_retries"]
    for middleware in broker.middleware:
        if isinstance(middleware, Retries):
            return middleware.max_retries
    return 0


def _unique_key(actor: dramatiq.Actor, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """The actor's uniqueness key for these arguments, or None for actors not declared unique."""
    unique = actor.options.get("unique")
    if not unique:
        return None
    if callable(unique):
        key = str(unique(*args, **kwargs))
    else:
        key = hashlib.sha256(json.dumps([args, kwargs], sort_keys=True).encode()).hexdigest()
    full = f"{actor.actor_name}:{key}"
    if len(full) > 255:
        full = f"{actor.actor_name[:180]}:{hashlib.sha256(key.encode()).hexdigest()}"
    return full


def _existing_for_keys(idempotency_key: str | None, unique_key: str | None) -> Job | None:
    if idempotency_key:
        existing = Job.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    if unique_key:
        return Job.objects.filter(unique_key=unique_key, status__in=Job.ACTIVE_STATUSES).first()
    return None
