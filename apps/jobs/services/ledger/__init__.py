"""The only code that changes a Job's status: guarded, forward-only transitions.

`transitions` holds the allow-table and the one guarded transition; `attempts` an attempt's start
and its one way to end; `waiting` the jobs that wait for a message.
"""

from __future__ import annotations

from apps.jobs.services.ledger.attempts import (
    EARLY_DELIVERY_MARGIN_S,
    job_fail,
    job_interrupt,
    job_progress_update,
    job_recover_orphan,
    job_retry_scheduled,
    job_start,
    job_succeed,
    relay_time_for,
)
from apps.jobs.services.ledger.transitions import ALLOWED_FROM, ERROR_MAX_CHARS, job_create, storable
from apps.jobs.services.ledger.waiting import (
    job_cancel,
    job_fail_undelivered,
    job_mark_queued,
    job_record_dead_letter,
    job_skip,
)

__all__ = [
    "ALLOWED_FROM",
    "EARLY_DELIVERY_MARGIN_S",
    "ERROR_MAX_CHARS",
    "job_cancel",
    "job_create",
    "job_fail",
    "job_fail_undelivered",
    "job_interrupt",
    "job_mark_queued",
    "job_progress_update",
    "job_record_dead_letter",
    "job_recover_orphan",
    "job_retry_scheduled",
    "job_skip",
    "job_start",
    "job_succeed",
    "relay_time_for",
    "storable",
]
