"""Signals user code can connect to, to react to jobs (sent after the change is committed)."""

from __future__ import annotations

from django.dispatch import Signal

#: An attempt started. Arguments: job, attempt (its number, from 1).
job_started = Signal()
#: A running job reported progress. Arguments: job_id, current, total, message.
job_progress = Signal()
#: A job finished. Arguments: job, result.
job_succeeded = Signal()
#: An attempt failed and another one is scheduled. Arguments: job, error, retry_at.
job_retrying = Signal()
#: A job failed for good (retries exhausted, permanent error, worker lost). Arguments: job.
job_failed = Signal()
