"""Every write of the jobs app. Job.status changes only in ledger.py."""

from __future__ import annotations

from apps.jobs.services.batch import BATCH_OPERATIONS, batch_process
from apps.jobs.services.email import email_send
from apps.jobs.services.ledger import (
    ALLOWED_FROM,
    job_cancel,
    job_fail,
    job_fail_undelivered,
    job_heartbeat,
    job_interrupt,
    job_mark_queued,
    job_progress_update,
    job_record_dead_letter,
    job_record_sent,
    job_recover_orphan,
    job_retry_scheduled,
    job_skip,
    job_start,
    job_succeed,
)
from apps.jobs.services.maintenance import jobs_prune_finished, sessions_clear_expired
from apps.jobs.services.probe import probe_run_record
from apps.jobs.services.relay import (
    job_hold_for_relay,
    job_record_message,
    jobs_recover_orphans,
    jobs_relay_due,
)
from apps.jobs.services.reports import report_build, report_create_daily
from apps.jobs.services.submission import actor_max_retries, job_message, job_publish, job_submit
from apps.jobs.services.sync import external_records_sync

__all__ = [
    "ALLOWED_FROM",
    "BATCH_OPERATIONS",
    "actor_max_retries",
    "batch_process",
    "email_send",
    "external_records_sync",
    "job_cancel",
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
    "job_record_sent",
    "job_recover_orphan",
    "job_retry_scheduled",
    "job_skip",
    "job_start",
    "job_submit",
    "job_succeed",
    "jobs_prune_finished",
    "jobs_recover_orphans",
    "jobs_relay_due",
    "probe_run_record",
    "report_build",
    "report_create_daily",
    "sessions_clear_expired",
]
