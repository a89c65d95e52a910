"""The only code that changes a Job's status: guarded, forward-only transitions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.jobs import runtime, signals
from apps.jobs.exceptions import InvalidTransition, JobNotFound, JobQuarantined
from apps.jobs.models import Job, JobAttempt, JobEvent
from apps.jobs.services import liveness

logger = logging.getLogger(__name__)

Status = Job.Status
Outcome = JobAttempt.Outcome

#: For each target status, the statuses a job may move to it from. Everything else is refused, so a
#: late or duplicate event can never move a job backwards. Transitions that end an attempt are
#: also fenced by the attempt number (see _transition).
ALLOWED_FROM: dict[str, set[str]] = {
    Status.PENDING: set(),  # only ever written by job creation
    Status.QUEUED: {Status.PENDING},  # the publish was confirmed
    Status.RUNNING: {Status.PENDING, Status.QUEUED, Status.RETRYING},  # a worker starts an attempt
    # The attempt failed, was interrupted by a shutdown, or its worker was lost; another is due.
    Status.RETRYING: {Status.RUNNING},
    Status.SUCCEEDED: {Status.RUNNING},
    # Retries exhausted or a permanent error; or dead-lettered before it ever started (expired).
    Status.FAILED: {Status.RUNNING, Status.PENDING, Status.QUEUED, Status.RETRYING},
    Status.CANCELLED: {Status.PENDING, Status.QUEUED, Status.RETRYING},
    Status.SKIPPED: {Status.PENDING, Status.QUEUED},  # an outdated tick, before its first attempt
}

#: Longest error message kept on a job (the traceback has the rest).
ERROR_MAX_CHARS = 2000
#: A delivery of a retrying job this much (seconds) before its retry is due is a stale copy of an
#: earlier attempt's message, not the retry: running it would skip the backoff. The margin covers
#: the delay queue's one-second granularity and small clock differences between hosts.
EARLY_DELIVERY_MARGIN_S = 3.0


def _transition(
    job_id: UUID | str,
    target: str,
    *,
    attempt: int | None = None,
    note: str = "",
    **fields: Any,
) -> Job:
    """Move the job to `target` under a row lock, or raise InvalidTransition.

    With `attempt`, the move only applies while that attempt is the job's latest one: an outcome
    reported by a worker that lost the job to a newer attempt is refused (fencing).
    """
    with transaction.atomic():
        try:
            job = Job.objects.select_for_update().get(pk=job_id)
        except Job.DoesNotExist:
            raise JobNotFound(f"No job has the id {job_id}.", job_id=job_id) from None
        if job.status not in ALLOWED_FROM[target] or (attempt is not None and job.attempts != attempt):
            raise InvalidTransition(
                f"Job {job_id} cannot move from {job.status} (attempt {job.attempts}) to {target}.",
                job_id=job_id,
                current=job.status,
                target=target,
            )
        from_status = job.status
        job.status = target
        for name, value in fields.items():
            setattr(job, name, value)
        job.save(update_fields=["status", *fields, "updated_at"])
        JobEvent.objects.create(
            job=job,
            from_status=from_status,
            to_status=target,
            attempt=job.attempts,
            note=storable(note)[:255],
        )
    logger.info(
        "Job %s %s -> %s (attempt %d).",
        job.pk,
        from_status,
        target,
        job.attempts,
        extra={"action": f"job_{target}", "job_id": str(job.pk), "actor": job.actor_name},
    )
    return job


def _try_transition(job_id: UUID | str, target: str, **kwargs: Any) -> Job | None:
    """_transition, where a refused move is the normal answer to a late or duplicate event."""
    try:
        return _transition(job_id, target, **kwargs)
    except InvalidTransition as exc:
        # Normal under at-least-once delivery (a late confirm, a duplicate): not worth INFO per job.
        logger.debug("%s Ignored.", exc.message, extra={"action": "job_transition_ignored"})
        return None


def job_create(*, status: str = Status.PENDING, note: str = "", **fields: Any) -> Job:
    """Write a new job with its first event, in one transaction (the only way a Job row is created)."""
    with transaction.atomic():
        job = Job.objects.create(status=status, **fields)
        JobEvent.objects.create(job=job, from_status="", to_status=status, note=storable(note)[:255])
    return job


def job_mark_queued(*, job_id: UUID | str) -> Job | None:
    """Record that RabbitMQ confirmed the job's first message; a worker may have started it already."""
    now = timezone.now()
    job = _try_transition(job_id, Status.QUEUED, enqueued_at=now, relay_after=None)
    if job is None:
        # A worker was faster than this confirmation: keep everything else (a retry may be waiting
        # for the relay by now), only record when the job was first queued.
        Job.objects.filter(pk=job_id, enqueued_at__isnull=True).update(enqueued_at=now)
    return job


# --- a worker starts an attempt -------------------------------------------------------------------


def job_start(*, job_id: UUID | str, redelivered: bool = False) -> Job | None:
    """Start the next attempt of a delivered job, or return None when this delivery must not run it.

    None answers a duplicate: the job already finished or was cancelled, runs under a live worker,
    or waits for a retry that is not due yet (a stale copy of an earlier attempt's message). A
    schedule tick that waited past SCHEDULE_SKIP_DELAY_S before its first attempt is skipped. A job
    left running by a lost worker is taken over with a new attempt; when that worker's attempt was
    the last one allowed, the job fails with "worker lost" and JobQuarantined is raised (a message
    that kills its worker must not loop forever).
    """
    quarantined = False
    with transaction.atomic():
        try:
            job = Job.objects.select_for_update().get(pk=job_id)
        except Job.DoesNotExist:
            raise JobNotFound(f"No job has the id {job_id}.", job_id=job_id) from None
        if job.status in Job.FINAL_STATUSES:
            _log_duplicate(job, f"is {job.status}")
            return None
        if job.status == Status.RUNNING:
            if liveness.attempt_is_alive(job):
                _log_duplicate(job, f"runs under a live worker (attempt {job.attempts})")
                return None
            job = _worker_lost(job, "The worker running it was lost.")
            quarantined = job.status == Status.FAILED
        elif job.status == Status.RETRYING and _is_early(job):
            # The retry's message exists, or the relay has a time to publish one (every write of
            # RETRYING guarantees it); make sure of the latter before dropping this copy.
            Job.objects.filter(pk=job.pk, relay_after__isnull=True).update(relay_after=job.next_retry_at)
            _log_duplicate(job, f"waits for its retry at {job.next_retry_at}")
            return None
        elif _is_outdated_tick(job):
            _transition(job.pk, Status.SKIPPED, note="outdated schedule tick", finished_at=timezone.now())
            return None
        if not quarantined:
            job = _attempt_begin(job, redelivered=redelivered)
    if quarantined:
        # Raised after the commit: the failure must stay recorded.
        logger.error(
            "Job %s failed: its worker died on its last allowed attempt.",
            job.pk,
            extra={"action": "job_quarantined", "job_id": str(job.pk)},
        )
        raise JobQuarantined(str(job.pk))
    return job


def _attempt_begin(job: Job, *, redelivered: bool) -> Job:
    number = job.attempts + 1
    job = _transition(
        job.pk,
        Status.RUNNING,
        attempts=number,
        started_at=job.started_at or timezone.now(),
        heartbeat_at=Now(),  # leases are judged on the database's clock, not the hosts'
        next_retry_at=None,
        relay_after=None,
    )
    JobAttempt.objects.create(
        job=job,
        number=number,
        worker_host=runtime.HOSTNAME,
        worker_pid=int(runtime.worker_id().split(":")[2]),
        worker_id=runtime.worker_id(),
        started_at=timezone.now(),
        redelivered=redelivered,
    )
    transaction.on_commit(lambda: signals.job_started.send(sender=Job, job=job, attempt=number))
    return job


def _is_early(job: Job) -> bool:
    margin = timedelta(seconds=EARLY_DELIVERY_MARGIN_S)
    return job.next_retry_at is not None and timezone.now() < job.next_retry_at - margin


def _is_outdated_tick(job: Job) -> bool:
    """A schedule tick that waited too long for its first attempt (periodiq's skip rule, once)."""
    if job.attempts or "scheduled_at" not in job.options:
        return False  # a retry of a tick is never skipped: that would hide its real error
    scheduled_at = parse_datetime(str(job.options["scheduled_at"]))
    if scheduled_at is None:
        return False
    return (timezone.now() - scheduled_at).total_seconds() > settings.SCHEDULE_SKIP_DELAY_S


def _log_duplicate(job: Job, why: str) -> None:
    logger.warning(
        "Job %s %s; its duplicate delivery is dropped.",
        job.pk,
        why,
        extra={"action": "job_duplicate_skipped", "job_id": str(job.pk)},
    )


# --- an attempt ends ------------------------------------------------------------------------------


def _attempt_end(
    job_id: UUID | str,
    attempt: int,
    target: str,
    outcome: str,
    *,
    note: str = "",
    error: BaseException | None = None,
    traceback: str = "",
    message: str = "",
    on_commit: Callable[[Job], object] | None = None,
    **fields: Any,
) -> Job | None:
    """End `attempt` of a job: the one path every outcome takes.

    Moves the job (fenced by the attempt number), closes the attempt's row, and sends `on_commit`
    with the fresh job once the transaction commits. Returns None when the move is refused.
    """
    with transaction.atomic():
        job = _try_transition(job_id, target, attempt=attempt, note=note, **fields)
        if job is None:
            return None
        _attempt_close(job, outcome, error=error, traceback=traceback, message=message)
        if on_commit is not None:
            transaction.on_commit(lambda: on_commit(job))
    return job


def _attempt_close(
    job: Job, outcome: str, *, error: BaseException | None = None, traceback: str = "", message: str = ""
) -> None:
    now = timezone.now()
    attempt = job.attempt_set.filter(number=job.attempts).first()
    if attempt is None:
        return
    attempt.finished_at = now
    attempt.duration_ms = max(0, int((now - attempt.started_at).total_seconds() * 1000))
    attempt.outcome = outcome
    if error is not None:
        attempt.error_class = f"{type(error).__module__}.{type(error).__qualname__}"
        attempt.error_message = storable(str(error))[:ERROR_MAX_CHARS]
    elif message:
        attempt.error_message = message
    attempt.traceback = storable(traceback)
    attempt.save(
        update_fields=["finished_at", "duration_ms", "outcome", "error_class", "error_message", "traceback"]
    )


def job_succeed(*, job_id: UUID | str, attempt: int, result: Any = None) -> Job | None:
    """Record that `attempt` finished with `result` (a JSON value)."""
    return _attempt_end(
        job_id,
        attempt,
        Status.SUCCEEDED,
        Outcome.SUCCEEDED,
        result=result,
        finished_at=timezone.now(),
        last_error="",
        last_traceback="",
        on_commit=lambda job: signals.job_succeeded.send(sender=Job, job=job, result=result),
    )


def job_retry_scheduled(
    *,
    job_id: UUID | str,
    attempt: int,
    error: BaseException,
    traceback: str,
    retry_at: datetime,
    relay_after: datetime | None = None,
) -> Job | None:
    """Record that `attempt` failed and that another one will run at `retry_at`.

    The retry's message is not published yet: `relay_after` (default: now plus
    JOBS_RELAY_GRACE_S, or, for a wait past what RabbitMQ may hold, shortly before it is due) is
    when the relay publishes it if the caller's own publish after this commits does not happen.
    """
    return _attempt_end(
        job_id,
        attempt,
        Status.RETRYING,
        Outcome.RETRIED,
        note=type(error).__name__,
        error=error,
        traceback=traceback,
        next_retry_at=retry_at,
        relay_after=relay_after or relay_time_for(retry_at),
        last_error=_error_text(error),
        last_traceback=storable(traceback),
        on_commit=lambda job: signals.job_retrying.send(sender=Job, job=job, error=error, retry_at=retry_at),
    )


def relay_time_for(due: datetime) -> datetime:
    """When the relay should publish a message due at `due` if its own publish does not happen."""
    now = timezone.now()
    grace = now + timedelta(seconds=settings.JOBS_RELAY_GRACE_S)
    return max(grace, due - timedelta(milliseconds=settings.JOBS_MAX_BROKER_DELAY_MS))


def job_fail(*, job_id: UUID | str, attempt: int, error: BaseException, traceback: str) -> Job | None:
    """Record that `attempt` failed for good (retries exhausted or a permanent error)."""
    job = _attempt_end(
        job_id,
        attempt,
        Status.FAILED,
        Outcome.FAILED,
        note=type(error).__name__,
        error=error,
        traceback=traceback,
        finished_at=timezone.now(),
        last_error=_error_text(error),
        last_traceback=storable(traceback),
        on_commit=lambda job: signals.job_failed.send(sender=Job, job=job),
    )
    if job is not None:
        logger.error(
            "Job %s failed for good after %d attempt(s): %s\n%s",
            job.pk,
            attempt,
            job.last_error,
            traceback,
            extra={"action": "job_failed", "job_id": str(job.pk)},
        )
    return job


def job_interrupt(*, job_id: UUID | str, attempt: int, relay_now: bool = False) -> Job | None:
    """Record that a stopping worker abandons `attempt`; it runs again without spending a retry.

    RabbitMQ gets the message back when the worker's connection closes, and may hand it to a
    worker that starts it, or that drops it because the job still looked running then: so the
    relay also has a time to publish it, and whichever copy comes first runs (the other is a
    duplicate). With `relay_now`, the caller publishes the job itself as soon as this commits
    (the relay's time is now: the message is acknowledged, not handed back).
    """
    now = timezone.now()
    with transaction.atomic():
        job = _attempt_end(
            job_id,
            attempt,
            Status.RETRYING,
            Outcome.INTERRUPTED,
            note="interrupted by shutdown",
            message="The worker shut down before it finished.",
            next_retry_at=now,
            relay_after=now if relay_now else now + timedelta(seconds=settings.JOBS_RELAY_GRACE_S),
        )
        if job is not None:
            # The row is still locked by the transition above.
            job.interruptions += 1
            Job.objects.filter(pk=job.pk).update(interruptions=job.interruptions)
    return job


def _worker_lost(job: Job, reason: str) -> Job:
    """The one rule for an attempt whose worker is gone: retry it at once, or fail when none are left.

    The caller holds the row lock. The relay publishes the retry (nobody else holds its message).
    """
    now = timezone.now()
    attempt = job.attempts
    if job.counted_attempts > job.max_retries:
        lost = _attempt_end(
            job.pk,
            attempt,
            Status.FAILED,
            Outcome.WORKER_LOST,
            note="worker lost",
            message=reason,
            finished_at=now,
            last_error=f"Worker lost: attempt {job.counted_attempts} of {job.max_retries + 1} died with it.",
            last_traceback="",
            on_commit=lambda job: signals.job_failed.send(sender=Job, job=job),
        )
    else:
        lost = _attempt_end(
            job.pk,
            attempt,
            Status.RETRYING,
            Outcome.WORKER_LOST,
            note="worker lost",
            message=reason,
            next_retry_at=now,
            relay_after=now,
            last_error=f"Worker lost: {reason}",
        )
    assert lost is not None, "the caller holds the row lock of a running job"
    logger.warning(
        "Job %s lost its worker on attempt %d; now %s.",
        job.pk,
        attempt,
        lost.status,
        extra={"action": "job_worker_lost", "job_id": str(job.pk)},
    )
    return lost


def job_recover_orphan(*, job_id: UUID | str, attempt: int) -> Job | None:
    """Retry (or fail, when attempts are used up) a running job whose worker's lease expired.

    Fenced by `attempt` and re-checked under the row lock: if the worker came back and finished,
    or heartbeated meanwhile, nothing changes.
    """
    with transaction.atomic():
        job = (
            Job.objects.select_for_update().filter(pk=job_id, status=Status.RUNNING, attempts=attempt).first()
        )
        if job is None or liveness.attempt_is_alive(job):
            return None
        return _worker_lost(job, "The worker stopped heartbeating.")


# --- jobs that never start ------------------------------------------------------------------------


def job_fail_undelivered(*, job_id: UUID | str, reason: str) -> Job | None:
    """Record that the job's message was dead-lettered before any attempt started (e.g. too old).

    Only a job that still waits for a message is failed: a late copy of a job that runs, or ran,
    elsewhere is just a duplicate, whatever happened to it.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status not in (Status.PENDING, Status.QUEUED, Status.RETRYING):
            return None
        return _transition(
            job_id,
            Status.FAILED,
            note=reason,
            finished_at=timezone.now(),
            last_error=storable(reason)[:ERROR_MAX_CHARS],
            relay_after=None,
        )


def job_skip(*, job_id: UUID | str, reason: str) -> Job | None:
    """Record that the job was deliberately not run (an outdated schedule tick)."""
    return _try_transition(job_id, Status.SKIPPED, note=reason, finished_at=timezone.now())


def job_cancel(*, job_id: UUID | str) -> Job:
    """Cancel a job that has not started; a delivery of it afterwards is dropped."""
    return _transition(
        job_id, Status.CANCELLED, note="cancelled", finished_at=timezone.now(), relay_after=None
    )


def job_record_dead_letter(
    *, job_id: UUID | str | None, actor_name: str, queue_name: str, reason: str, payload: Any = None
) -> Job:
    """Show a dead-lettered message no worker could run (unknown actor, undecodable) as a failed job.

    A job already in the ledger is failed only while it waits for a message (this copy was its
    message); one that runs or ran elsewhere is left alone: this was a duplicate.
    """
    reason = storable(reason)
    existing = Job.objects.filter(pk=job_id).first() if job_id else None
    if existing is None:
        job = job_create(
            **({"id": job_id} if job_id else {}),
            status=Status.FAILED,
            note=reason,
            actor_name=actor_name[:200],
            queue_name=queue_name[:100],
            args=[] if payload is None else [storable(str(payload))],
            finished_at=timezone.now(),
            last_error=reason[:ERROR_MAX_CHARS],
        )
    else:
        job = job_fail_undelivered(job_id=existing.pk, reason=reason) or existing
    logger.error(
        "Dead-lettered %s: %s", job.pk, reason, extra={"action": "job_dead_lettered", "job_id": str(job.pk)}
    )
    return job


# --- while it runs --------------------------------------------------------------------------------


def job_progress_update(
    *, job_id: UUID | str, attempt: int, current: int, total: int | None, message: str
) -> bool:
    """Write a running job's progress; ignored once the attempt is no longer the running one."""
    message = storable(message)[:255]
    updated = Job.objects.filter(pk=job_id, status=Status.RUNNING, attempts=attempt).update(
        progress_current=current,
        progress_total=total,
        progress_message=message,
        heartbeat_at=Now(),
    )
    if updated:
        pk = UUID(str(job_id))
        transaction.on_commit(
            lambda: signals.job_progress.send(
                sender=Job, job_id=pk, current=current, total=total, message=message
            )
        )
    return bool(updated)


def storable(text: str) -> str:
    """`text` without NUL characters, which PostgreSQL refuses in text columns."""
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def _error_text(error: BaseException) -> str:
    text = storable(str(error))
    return f"{type(error).__name__}: {text}"[:ERROR_MAX_CHARS] if text else type(error).__name__
