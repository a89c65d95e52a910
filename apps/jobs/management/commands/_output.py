"""How the jobs commands print a job."""

from __future__ import annotations

from typing import Any

from apps.jobs import selectors
from apps.jobs.models import Job


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def job_as_dict(job: Job, *, with_attempts: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(job.pk),
        "actor": job.actor_name,
        "queue": job.queue_name,
        "status": job.status,
        "args": job.args,
        "kwargs": job.kwargs,
        "options": job.options,
        "priority": job.priority,
        "attempts": job.attempts,
        "interruptions": job.interruptions,
        "max_retries": job.max_retries,
        "progress": {
            "current": job.progress_current,
            "total": job.progress_total,
            "message": job.progress_message,
        },
        "result": job.result,
        "last_error": job.last_error or None,
        "source": job.source,
        "idempotency_key": job.idempotency_key,
        "created_at": _iso(job.created_at),
        "scheduled_at": _iso(job.scheduled_at),
        "enqueued_at": _iso(job.enqueued_at),
        "started_at": _iso(job.started_at),
        "next_retry_at": _iso(job.next_retry_at),
        "finished_at": _iso(job.finished_at),
    }
    if with_attempts:
        data["attempt_history"] = [
            {
                "number": attempt.number,
                "outcome": attempt.outcome,
                "worker": f"{attempt.worker_host}:{attempt.worker_pid}",
                "started_at": _iso(attempt.started_at),
                "finished_at": _iso(attempt.finished_at),
                "duration_ms": attempt.duration_ms,
                "redelivered": attempt.redelivered,
                "error_class": attempt.error_class or None,
                "error_message": attempt.error_message or None,
            }
            for attempt in selectors.job_attempts(job=job)
        ]
    return data
