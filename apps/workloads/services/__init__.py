"""Every write of the example workloads; job state itself is left to apps.jobs.services."""

from __future__ import annotations

from apps.workloads.services.batch import BATCH_OPERATIONS, batch_process
from apps.workloads.services.email import email_send
from apps.workloads.services.maintenance import sessions_clear_expired
from apps.workloads.services.probe import probe_run_record
from apps.workloads.services.reports import (
    report_build,
    report_create_daily,
    report_day_for_tick,
    report_request,
)
from apps.workloads.services.sync import external_records_sync

__all__ = [
    "BATCH_OPERATIONS",
    "batch_process",
    "email_send",
    "external_records_sync",
    "probe_run_record",
    "report_build",
    "report_create_daily",
    "report_day_for_tick",
    "report_request",
    "sessions_clear_expired",
]
