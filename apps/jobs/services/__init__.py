"""Every write of the jobs app. Job.status changes only in ledger.py."""

from __future__ import annotations

from apps.jobs.services.ledger import (
    ALLOWED_FROM,
    job_cancel,
    job_create,
    job_fail,
    job_fail_undelivered,
    job_interrupt,
    job_mark_queued,
    job_progress_update,
    job_record_dead_letter,
    job_recover_orphan,
    job_retry_scheduled,
    job_skip,
    job_start,
    job_succeed,
)
from apps.jobs.services.liveness import attempt_is_alive, job_heartbeat, jobs_recover_orphans
from apps.jobs.services.maintenance import jobs_delete_finished_before, jobs_prune_finished
from apps.jobs.services.operations import BulkOutcome, job_retry, job_run_again, jobs_cancel, jobs_retry
from apps.jobs.services.recording import job_hold_for_relay, job_record_message
from apps.jobs.services.relay import job_relay, jobs_relay_due
from apps.jobs.services.submission import actor_max_retries, job_message, job_publish, job_submit

__all__ = [
    "ALLOWED_FROM",
    "BulkOutcome",
    "actor_max_retries",
    "attempt_is_alive",
    "job_cancel",
    "job_create",
    "job_fail",
    "job_fail_undelivered",
    "job_heartbeat",
    "job_hold_for_relay",
    "job_interrupt",
    "job_mark_queued",
    "job_message",
    "job_progress_update",
    "job_publish",
    "job_record_dead_letter",
    "job_record_message",
    "job_recover_orphan",
    "job_relay",
    "job_retry",
    "job_retry_scheduled",
    "job_run_again",
    "job_skip",
    "job_start",
    "job_submit",
    "job_succeed",
    "jobs_cancel",
    "jobs_delete_finished_before",
    "jobs_prune_finished",
    "jobs_recover_orphans",
    "jobs_relay_due",
    "jobs_retry",
]
