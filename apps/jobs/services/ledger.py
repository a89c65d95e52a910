"""The only code that changes a Job's status: guarded, forward-only transitions."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.jobs import runtime, signals
from apps.jobs.exceptions import InvalidTransition, JobNotFound, JobQuarantined
from apps.jobs.models import Job, JobAttempt, JobEvent

logger = logging.getLogger(__name__)

Status = Job.Status

#: For each target status, the statuses a job may move to it from. Everything else is refused, so a
#: late or duplicate event can never move a job backwards. Transitions that finish an attempt are
#: also fenced by the attempt number (see _transition).
ALLOWED_FROM: dict[str, set[str]] = {
    Status.PENDING: set(),  # only ever written by job creation
    Status.QUEUED: {Status.PENDING},  # the publish was confirmed
    # A worker starts an attempt; RUNNING -> RUNNING is a takeover from a worker that died.
    Status.RUNNING: {Status.PENDING, Status.QUEUED, Status.RETRYING, Status.RUNNING},
    Status.RETRYING: {Status.RUNNING},  # the attempt failed, another one is scheduled
    Status.SUCCEEDED: {Status.RUNNING},
    # Retries exhausted or a permanent error; or dead-lettered before it ever started (expired).
    Status.FAILED: {Status.RUNNING, Status.PENDING, Status.QUEUED, Status.RETRYING},
    Status.CANCELLED: {Status.PENDING, Status.QUEUED, Status.RETRYING},
    Status.SKIPPED: {Status.PENDING, Status.QUEUED, Status.RETRYING},
}

#: Longest error message kept on a job (the traceback has the rest).
ERROR_MAX_CHARS = 2000


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
            job=job, from_status=from_status, to_status=target, attempt=job.attempts, note=note[:255]
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


def job_mark_queued(*, job_id: UUID | str) -> Job | None:
    """Record that RabbitMQ confirmed the job's message; a worker may have started it already."""
    now = timezone.now()
    job = _try_transition(job_id, Status.QUEUED, enqueued_at=now, relay_after=None)
    if job is None:
        # A worker was faster than this confirmation: keep the status, still record the time.
        Job.objects.filter(pk=job_id, enqueued_at__isnull=True).update(enqueued_at=now, relay_after=None)
    return job


def _attempt_is_alive(job: Job) -> bool:
    """Whether the worker that runs the job's latest attempt still lives (so a redelivery is a duplicate)."""
    attempt = job.attempt_set.filter(number=job.attempts).first()
    if attempt is None:
        return False
    if attempt.worker_host == runtime.HOSTNAME and attempt.worker_pid == os.getpid():
        return runtime.claimed_by_another_thread(job.pk)
    alive = runtime.process_is_alive(attempt.worker_host, attempt.worker_pid)
    if alive is not None:
        return alive
    lease_start = timezone.now() - timedelta(seconds=settings.JOBS_LEASE_S)
    return job.heartbeat_at is not None and job.heartbeat_at >= lease_start


def _attempt_finish(
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
        attempt.error_message = str(error)[:ERROR_MAX_CHARS]
    elif message:
        attempt.error_message = message
    attempt.traceback = traceback
    attempt.save(
        update_fields=["finished_at", "duration_ms", "outcome", "error_class", "error_message", "traceback"]
    )


def job_start(*, job_id: UUID | str, redelivered: bool = False) -> Job | None:
    """Start the next attempt of a delivered job, or return None when it must not run.

    None answers a duplicate delivery: the job already finished, was cancelled, or runs under a
    live worker. A job left running by a dead worker is taken over with a new attempt; when that
    worker's attempt was the last one allowed, the job fails with "worker lost" and
    JobQuarantined is raised (a message that kills its worker must not loop forever).
    """
    now = timezone.now()
    with transaction.atomic():
        try:
            job = Job.objects.select_for_update().get(pk=job_id)
        except Job.DoesNotExist:
            raise JobNotFound(f"No job has the id {job_id}.", job_id=job_id) from None
        if job.status in Job.FINAL_STATUSES:
            logger.warning(
                "Job %s is %s; its duplicate delivery is dropped.",
                job.pk,
                job.status,
                extra={"action": "job_duplicate_skipped", "job_id": str(job.pk)},
            )
            return None
        if job.status == Status.RUNNING:
            if _attempt_is_alive(job):
                logger.warning(
                    "Job %s runs under a live worker (attempt %d); its duplicate delivery is dropped.",
                    job.pk,
                    job.attempts,
                    extra={"action": "job_duplicate_skipped", "job_id": str(job.pk)},
                )
                return None
            _attempt_finish(job, JobAttempt.Outcome.WORKER_LOST, message="The worker running it was lost.")
            if job.counted_attempts > job.max_retries:
                _transition(
                    job.pk,
                    Status.FAILED,
                    note="worker lost",
                    finished_at=now,
                    last_error=(
                        f"Worker lost: attempt {job.counted_attempts} of {job.max_retries + 1} died with it."
                    ),
                    last_traceback="",
                )
                transaction.on_commit(lambda: signals.job_failed.send(sender=Job, job=job))
                quarantined = job
            else:
                quarantined = None
        else:
            quarantined = None
        if quarantined is None:
            number = job.attempts + 1
            job = _transition(
                job.pk,
                Status.RUNNING,
                note="worker lost, taken over" if job.status == Status.RUNNING else "",
                attempts=number,
                started_at=job.started_at or now,
                heartbeat_at=now,
                next_retry_at=None,
            )
            JobAttempt.objects.create(
                job=job,
                number=number,
                worker_host=runtime.HOSTNAME,
                worker_pid=os.getpid(),
                started_at=now,
                redelivered=redelivered,
            )
            transaction.on_commit(lambda: signals.job_started.send(sender=Job, job=job, attempt=number))
    if quarantined is not None:
        logger.error(
            "Job %s failed: its worker died on its last allowed attempt.",
            job.pk,
            extra={"action": "job_quarantined", "job_id": str(job.pk)},
        )
        raise JobQuarantined(str(job.pk))
    return job


def job_succeed(*, job_id: UUID | str, attempt: int, result: Any = None) -> Job | None:
    """Record that `attempt` finished with `result` (a JSON value)."""
    with transaction.atomic():
        job = _try_transition(
            job_id,
            Status.SUCCEEDED,
            attempt=attempt,
            result=result,
            finished_at=timezone.now(),
            last_error="",
            last_traceback="",
        )
        if job is not None:
            _attempt_finish(job, JobAttempt.Outcome.SUCCEEDED)
            transaction.on_commit(lambda: signals.job_succeeded.send(sender=Job, job=job, result=result))
    return job


def job_retry_scheduled(
    *,
    job_id: UUID | str,
    attempt: int,
    error: BaseException,
    traceback: str,
    retry_at: datetime,
    published: bool = True,
) -> Job | None:
    """Record that `attempt` failed and that another one will run at `retry_at`.

    `published` says whether the retry's message is in RabbitMQ; if not (a long wait, or the
    publish failed), the relay publishes it when due.
    """
    with transaction.atomic():
        job = _try_transition(
            job_id,
            Status.RETRYING,
            attempt=attempt,
            note=type(error).__name__,
            next_retry_at=retry_at,
            relay_after=None if published else retry_at,
            last_error=_error_text(error),
            last_traceback=traceback,
        )
        if job is not None:
            _attempt_finish(job, JobAttempt.Outcome.RETRIED, error=error, traceback=traceback)
            transaction.on_commit(
                lambda: signals.job_retrying.send(sender=Job, job=job, error=error, retry_at=retry_at)
            )
    if job is not None:
        logger.warning(
            "Job %s attempt %d failed with %s; retrying at %s.",
            job.pk,
            attempt,
            type(error).__name__,
            retry_at,
            extra={"action": "job_retry_scheduled", "job_id": str(job.pk)},
        )
    return job


def job_fail(*, job_id: UUID | str, attempt: int, error: BaseException, traceback: str) -> Job | None:
    """Record that `attempt` failed for good (retries exhausted or a permanent error)."""
    with transaction.atomic():
        job = _try_transition(
            job_id,
            Status.FAILED,
            attempt=attempt,
            note=type(error).__name__,
            finished_at=timezone.now(),
            last_error=_error_text(error),
            last_traceback=traceback,
        )
        if job is not None:
            _attempt_finish(job, JobAttempt.Outcome.FAILED, error=error, traceback=traceback)
            transaction.on_commit(lambda: signals.job_failed.send(sender=Job, job=job))
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


def job_fail_undelivered(*, job_id: UUID | str, reason: str) -> Job | None:
    """Record that the job's message was dead-lettered before any attempt started (e.g. too old)."""
    with transaction.atomic():
        job = _try_transition(
            job_id,
            Status.FAILED,
            note=reason[:255],
            finished_at=timezone.now(),
            last_error=reason,
        )
        if job is not None:
            transaction.on_commit(lambda: signals.job_failed.send(sender=Job, job=job))
    return job


def job_skip(*, job_id: UUID | str, reason: str) -> Job | None:
    """Record that the job was deliberately not run (an outdated schedule tick)."""
    return _try_transition(job_id, Status.SKIPPED, note=reason[:255], finished_at=timezone.now())


def job_cancel(*, job_id: UUID | str) -> Job:
    """Cancel a job that has not started; a delivery of it afterwards is dropped."""
    return _transition(job_id, Status.CANCELLED, note="cancelled", finished_at=timezone.now())


def job_recover_orphan(*, job_id: UUID | str, attempt: int) -> Job | None:
    """Retry (or fail, when attempts are used up) a job whose worker stopped heartbeating.

    Fenced by `attempt`: if the worker came back and finished meanwhile, nothing changes.
    """
    now = timezone.now()
    with transaction.atomic():
        job = (
            Job.objects.select_for_update().filter(pk=job_id, status=Status.RUNNING, attempts=attempt).first()
        )
        if job is None:
            return None
        _attempt_finish(job, JobAttempt.Outcome.WORKER_LOST, message="The worker stopped heartbeating.")
        if job.counted_attempts > job.max_retries:
            job = _transition(
                job.pk,
                Status.FAILED,
                attempt=attempt,
                note="worker lost",
                finished_at=now,
                last_error=(
                    f"Worker lost: attempt {job.counted_attempts} of {job.max_retries + 1} "
                    "stopped heartbeating."
                ),
            )
            transaction.on_commit(lambda: signals.job_failed.send(sender=Job, job=job))
        else:
            job = _transition(
                job.pk,
                Status.RETRYING,
                attempt=attempt,
                note="worker lost",
                next_retry_at=now,
                relay_after=now,
                last_error="Worker lost: it stopped heartbeating.",
            )
    logger.warning(
        "Job %s lost its worker on attempt %d; now %s.",
        job.pk,
        attempt,
        job.status,
        extra={"action": "job_orphan_recovered", "job_id": str(job.pk)},
    )
    return job


def job_interrupt(*, job_id: UUID | str, attempt: int) -> Job | None:
    """Record that a stopping worker abandoned `attempt`; RabbitMQ redelivers its message.

    The attempt does not count against max_retries: the job did nothing wrong.
    """
    with transaction.atomic():
        job = _try_transition(
            job_id,
            Status.RETRYING,
            attempt=attempt,
            note="interrupted by shutdown",
            next_retry_at=timezone.now(),
        )
        if job is not None:
            # The row is still locked by the transition above.
            job.interruptions += 1
            Job.objects.filter(pk=job.pk).update(interruptions=job.interruptions)
            _attempt_finish(
                job, JobAttempt.Outcome.INTERRUPTED, message="The worker shut down before it finished."
            )
    return job


def job_record_dead_letter(
    *, job_id: UUID | str | None, actor_name: str, queue_name: str, reason: str, payload: Any = None
) -> Job:
    """Show a dead-lettered message no worker could run (unknown actor, undecodable) as a failed job."""
    now = timezone.now()
    try:
        with transaction.atomic():
            job = Job.objects.create(
                **({"id": job_id} if job_id else {}),
                actor_name=actor_name[:200],
                queue_name=queue_name[:100],
                args=[] if payload is None else [payload],
                status=Status.FAILED,
                finished_at=now,
                last_error=reason[:ERROR_MAX_CHARS],
            )
            JobEvent.objects.create(job=job, from_status="", to_status=Status.FAILED, note=reason[:255])
    except IntegrityError:
        # Its producer recorded it (perhaps a moment ago): fail that row.
        job = _try_transition(
            job_id, Status.FAILED, note=reason[:255], finished_at=now, last_error=reason[:ERROR_MAX_CHARS]
        ) or Job.objects.get(pk=job_id)
    logger.error(
        "Dead-lettered %s: %s", job.pk, reason, extra={"action": "job_dead_lettered", "job_id": str(job.pk)}
    )
    return job


def job_heartbeat(*, job_ids: list[UUID]) -> int:
    """Refresh the lease of jobs a live worker runs; returns how many rows were touched."""
    if not job_ids:
        return 0
    return Job.objects.filter(pk__in=job_ids, status=Status.RUNNING).update(heartbeat_at=timezone.now())


def job_progress_update(
    *, job_id: UUID | str, attempt: int, current: int, total: int | None, message: str
) -> bool:
    """Write a running job's progress; ignored once the attempt is no longer the running one."""
    updated = Job.objects.filter(pk=job_id, status=Status.RUNNING, attempts=attempt).update(
        progress_current=current,
        progress_total=total,
        progress_message=message[:255],
        heartbeat_at=timezone.now(),
    )
    if updated:
        transaction.on_commit(
            lambda: signals.job_progress.send(
                sender=Job, job_id=job_id, current=current, total=total, message=message
            )
        )
    return bool(updated)


def job_record_sent(
    *,
    job_id: UUID | str,
    actor_name: str,
    queue_name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    max_retries: int,
    status: str = Status.QUEUED,
    relay_after: datetime | None = None,
) -> Job:
    """Find the job of a message, writing its row if it was sent without job_submit (actor.send(), a tick)."""
    try:
        return Job.objects.get(pk=job_id)
    except Job.DoesNotExist:
        pass
    source = Job.Source.SCHEDULE if "scheduled_at" in options else Job.Source.CODE
    now = timezone.now()
    try:
        with transaction.atomic():
            job = Job.objects.create(
                id=job_id,
                actor_name=actor_name,
                queue_name=queue_name,
                args=args,
                kwargs=kwargs,
                options=_storable_options(options),
                priority=options.get("broker_priority") or 0,
                status=status,
                max_retries=max_retries,
                source=source,
                enqueued_at=now if status == Status.QUEUED else None,
                relay_after=relay_after,
            )
            JobEvent.objects.create(job=job, from_status="", to_status=status, note="recorded from broker")
    except IntegrityError:
        # The producer and the worker both record an unknown message; the first one wins.
        return Job.objects.get(pk=job_id)
    return job


#: Message options that describe one delivery, not the job: never stored or re-sent.
DELIVERY_OPTIONS = frozenset({"eta", "retries", "traceback", "requeue_timestamp", "redis_message_id"})


def _storable_options(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if key not in DELIVERY_OPTIONS}


def _error_text(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}"[:ERROR_MAX_CHARS] if text else type(error).__name__
