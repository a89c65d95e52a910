"""An attempt in the ledger: started by a worker, then ended once, by one path, whatever the outcome."""

from __future__ import annotations

import logging
import os
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
from apps.jobs.exceptions import JobNotFound, JobQuarantined
from apps.jobs.models import Job, JobAttempt
from apps.jobs.services import liveness
from apps.jobs.services.ledger import transitions

logger = logging.getLogger("apps.jobs.services.ledger")

Status = Job.Status
Outcome = JobAttempt.Outcome

#: A delivery of a retrying job this much (seconds) before its retry is due is a stale copy of an
#: earlier attempt's message, not the retry: running it would skip the backoff. The margin covers
#: the delay queue's one-second granularity and small clock differences between hosts.
EARLY_DELIVERY_MARGIN_S = 3.0


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
            transitions.transition(
                job.pk, Status.SKIPPED, note="outdated schedule tick", finished_at=timezone.now()
            )
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
    job = transitions.transition(
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
        worker_pid=os.getpid(),
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
        job = transitions.try_transition(job_id, target, attempt=attempt, note=note, **fields)
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
        attempt.error_message = transitions.storable(str(error))[: transitions.ERROR_MAX_CHARS]
    elif message:
        attempt.error_message = message
    attempt.traceback = transitions.storable(traceback)
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
        last_error=transitions.error_text(error),
        last_traceback=transitions.storable(traceback),
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
        last_error=transitions.error_text(error),
        last_traceback=transitions.storable(traceback),
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


def job_progress_update(
    *, job_id: UUID | str, attempt: int, current: int, total: int | None, message: str
) -> bool:
    """Write a running job's progress; ignored once the attempt is no longer the running one."""
    message = transitions.storable(message)[:255]
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
