"""The example jobs: thin actors that take ids and small JSON values and call services."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from apps.jobs import progress
from apps.jobs.exceptions import PermanentFailure, SoftTimeLimitExceeded, TransientFailure
from apps.workloads import selectors, services
from apps.workloads.services.probe import PROBE_DB_HOLDS, probe_db_hold

logger = logging.getLogger(__name__)

#: Hard limits (ms), all under RabbitMQ's 30-minute consumer_timeout.
EMAIL_TIME_LIMIT_MS = 60_000
REPORT_TIME_LIMIT_MS = 20 * 60_000
BATCH_TIME_LIMIT_MS = 25 * 60_000
PROBE_TIME_LIMIT_MS = 5 * 60_000
#: The probe sleeps in steps this long (ms), so time limits and shutdowns can stop it.
PROBE_SLEEP_STEP_MS = 50


def _current_message_id() -> str | None:
    message = CurrentMessage.get_current_message()
    return message.message_id if message is not None else None


@dramatiq.actor(
    actor_name="jobs.send_email",  # kept from apps.jobs: queued messages carry this name
    queue_name="emails",
    max_retries=8,
    min_backoff=10_000,
    time_limit=EMAIL_TIME_LIMIT_MS,
    throws=(PermanentFailure,),
)
def send_email(
    to: list[str] | str,
    subject: str,
    body: str,
    html_body: str | None = None,
    from_email: str | None = None,
) -> dict[str, Any]:
    """Send an email with the configured backend; bad addresses fail at once, outages are retried."""
    recipients = [to] if isinstance(to, str) else list(to)
    sent = services.email_send(
        to=recipients,
        subject=subject,
        body=body,
        html_body=html_body,
        from_email=from_email,
        message_id=_current_message_id(),
    )
    return {"sent": sent, "to": recipients}


@dramatiq.actor(
    actor_name="jobs.generate_report",  # kept from apps.jobs: queued messages carry this name
    queue_name="reports",
    max_retries=3,
    time_limit=REPORT_TIME_LIMIT_MS,
    throws=(PermanentFailure,),
    unique=True,
)
def generate_report(report_id: int) -> dict[str, Any]:
    """Build a Report's CSV in batches of 1,000 rows with progress; a built report is not rebuilt."""
    report = selectors.report_get(report_id=report_id)
    rows = services.report_build(report=report, progress=progress.report)
    return {"report_id": report.pk, "rows": rows, "file": report.file.name}


@dramatiq.actor(
    actor_name="jobs.process_batch",  # kept from apps.jobs: queued messages carry this name
    queue_name="batch",
    max_retries=3,
    time_limit=BATCH_TIME_LIMIT_MS,
    throws=(PermanentFailure,),
)
def process_batch(items: list[Any], operation: str = "validate_email") -> dict[str, int]:
    """Apply an operation to every item, recording each item's outcome; failed items do not fail the batch."""
    message_id = _current_message_id()
    return services.batch_process(
        job_id=message_id, items=items, operation=operation, progress=progress.report
    )


@dramatiq.actor(
    actor_name="jobs.probe",  # kept from apps.jobs: queued messages carry this name
    queue_name="default",
    max_retries=5,
    min_backoff=500,
    max_backoff=5_000,
    time_limit=PROBE_TIME_LIMIT_MS,
    throws=(PermanentFailure,),
)
def probe(
    sleep_ms: int = 0,
    fail_attempts: int = 0,
    permanent: bool = False,
    crash_attempts: int = 0,
    db_hold: str = "",
    db_hold_ms: int = 0,
) -> dict[str, Any]:
    """Diagnostic job to test the pipeline end to end.

    Sleeps `sleep_ms` in short steps (reporting progress), fails its first `fail_attempts` attempts
    with a transient error, and with `permanent` fails for good without retries. `crash_attempts`
    kills its own worker process (SIGKILL, as the OOM killer would) on its first N attempts. Each
    completed run is counted in ProbeRun, so a job done twice would show.

    `db_hold` then keeps the worker thread inside PostgreSQL for `db_hold_ms`, to see what a time
    limit or a shutdown landing there does (apps.workloads.services.probe.probe_db_hold):
    "pg_sleep" runs one long query; "atomic" writes the run's ProbeRun row in a transaction and
    sleeps in SQL before committing (an interrupted hold must leave no row); "cursor" streams a
    server-side cursor in a transaction, each row sleeping in SQL; "commit" writes the ProbeRun row
    in a transaction whose COMMIT sleeps in SQL. "" (the default) holds nothing.
    """
    attempt = progress.current_attempt() or 1
    if attempt <= crash_attempts:
        logger.warning("Probe kills its worker process on attempt %d, as asked.", attempt)
        os.kill(os.getpid(), signal.SIGKILL)
    if permanent:
        raise PermanentFailure("The probe was asked to fail permanently.")
    if db_hold and db_hold not in PROBE_DB_HOLDS:
        raise PermanentFailure(f"Unknown db_hold {db_hold!r}; known: {', '.join(PROBE_DB_HOLDS)}.")
    if attempt <= fail_attempts:
        raise TransientFailure(f"The probe fails attempt {attempt} of the first {fail_attempts}, as asked.")
    started = time.monotonic()
    try:
        slept = 0
        while slept < sleep_ms:
            step = min(PROBE_SLEEP_STEP_MS, sleep_ms - slept)
            time.sleep(step / 1000)
            slept += step
            progress.report(slept, sleep_ms, "sleeping")
    except SoftTimeLimitExceeded:
        logger.warning("Probe reached its soft time limit after %d ms; stopping.", slept)
        raise
    result: dict[str, Any] = {"attempt": attempt, "slept_ms": round((time.monotonic() - started) * 1000)}
    if db_hold:
        held = time.monotonic()
        probe_db_hold(mode=db_hold, hold_ms=db_hold_ms, job_id=_current_message_id(), attempt=attempt)
        result["db_held_ms"] = round((time.monotonic() - held) * 1000)
    if db_hold not in ("atomic", "commit"):  # those holds recorded the run in their transaction
        services.probe_run_record(job_id=_current_message_id(), attempt=attempt)
    return result
