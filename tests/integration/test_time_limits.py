"""Time limits that land while an actor is inside PostgreSQL (issue 13): recorded, and the thread goes on.

A soft or hard time limit is raised into the worker thread asynchronously. When it lands inside a
query, a transaction's body, a server-side cursor's fetch or a COMMIT (the probe's db_hold modes
pg_sleep, atomic, cursor and commit), the thread's connection is left mid-query or mid-transaction;
the ledger must still record each attempt's outcome (on a fresh connection) and the next job on the
same thread must run normally. Every job here runs on one worker with one thread.

The worker waits for PostgreSQL with psycopg's pure-Python wait loop (PSYCOPG_WAIT_FUNC=wait_poll,
what psycopg uses without its C extension), which an asynchronous exception interrupts mid-query.
psycopg's C loop (psycopg[binary]) runs no Python code until the server answers, so there a limit
lands only in the short Python stretches between sending a query and reading its result (as in the
issue's bulk inserts): the same broken state, but too rarely hit for a test to rely on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from django.db import connection

from apps.jobs import services
from apps.jobs.models import Job, JobAttempt
from apps.workloads.models import ProbeRun
from tests.live import WorkerProcess, queue_consumers, wait_for, wait_job

Status = Job.Status
Outcome = JobAttempt.Outcome

#: How long the probe stays inside the database: well past either limit below.
HOLD_MS = 4000
#: Per limit: the options that make only that limit fire, and the error it raises.
LIMITS = {
    "soft": (
        {"soft_time_limit": 1000, "time_limit": 20_000},
        "apps.jobs.exceptions.SoftTimeLimitExceeded",
    ),
    # A soft limit past the hard one means "no soft limit".
    "hard": (
        {"time_limit": 1500, "soft_time_limit": 60_000},
        "dramatiq.middleware.time_limit.TimeLimitExceeded",
    ),
}
#: One quick retry, so each job has two interrupted attempts.
RETRY_ONCE = {"max_retries": 1, "min_backoff": 100, "max_backoff": 200}
#: Holds that leave the interrupted connection to the ledger: a query outside a transaction, and a
#: COMMIT (Django's atomic block then fails to restore autocommit). Inside a transaction's body,
#: Django's atomic block drops the connection itself when its rollback fails.
LEFT_TO_THE_LEDGER = {"pg_sleep", "commit"}
#: What the fix logs when it drops a connection an interrupted actor left unusable.
CONNECTION_REPLACED = "Replaced the default database connection"


@pytest.fixture(scope="module")
def _one_thread_session(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: Any, services_up: None
) -> Iterator[WorkerProcess]:
    if queue_consumers("default"):
        # The shared worker of the other modules is running: stop it, so that every job of this
        # module runs on the one thread below (the `worker` fixture restarts it when next used).
        request.getfixturevalue("_worker_session").stop()
    with django_db_blocker.unblock():
        worker = WorkerProcess(
            "time-limits", tier="integration", threads=1, extra_env={"PSYCOPG_WAIT_FUNC": "wait_poll"}
        )
        worker.start()
        yield worker
        worker.stop()


@pytest.fixture
def one_thread(
    _one_thread_session: WorkerProcess, broker: dramatiq.Broker, transactional_db: None
) -> WorkerProcess:
    """A live worker with a single worker thread, on empty queues."""
    broker.flush_all()
    if not _one_thread_session.alive():
        _one_thread_session.stop()
        _one_thread_session.start()
    return _one_thread_session


def dead_letters(broker: dramatiq.Broker, queue: str) -> int:
    return broker.get_queue_message_counts(queue)[2]


def sessions_sleeping_in_sql() -> int:
    """Sessions of the test database still in a pg_sleep: an interrupted query nobody cancelled."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event = 'PgSleep'"
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("limit", ["soft", "hard"])
@pytest.mark.parametrize("hold", ["pg_sleep", "atomic", "cursor", "commit"])
def test_time_limit_inside_the_database__is_recorded_and_the_thread_runs_the_next_job(
    one_thread: WorkerProcess, broker: dramatiq.Broker, hold: str, limit: str
) -> None:
    limit_options, limit_error = LIMITS[limit]
    replaced_before = one_thread.log().count(CONNECTION_REPLACED)

    # Given a probe that sits inside PostgreSQL longer than its time limit, allowed one retry
    job = services.job_submit(
        actor="jobs.probe",
        kwargs={"db_hold": hold, "db_hold_ms": HOLD_MS},
        options={**limit_options, **RETRY_ONCE},
    )

    # Then both attempts are stopped by the limit and recorded: retried, then failed for good
    job = wait_job(job.pk, timeout=20)
    assert job.status == Status.FAILED, job.last_error
    assert job.attempts == 2
    statuses = list(job.events.order_by("at", "id").values_list("to_status", flat=True))
    assert statuses[-4:] == [Status.RUNNING, Status.RETRYING, Status.RUNNING, Status.FAILED], statuses
    attempts = list(job.attempt_set.order_by("number"))
    assert [a.outcome for a in attempts] == [Outcome.RETRIED, Outcome.FAILED]
    for attempt in attempts:
        assert attempt.finished_at is not None
        assert attempt.duration_ms < HOLD_MS, "the limit did not stop the attempt inside the database"
        assert limit_error.rsplit(".", 1)[-1] in attempt.traceback
        # (for an interrupted COMMIT, Django's atomic block then fails to restore autocommit on the
        # busy connection; the ledger still records the limit, the cause, not that follow-on error)
        assert attempt.error_class == limit_error, (attempt.number, attempt.error_message)
    # And its message is in the dead-letter queue
    wait_for(lambda: dead_letters(broker, "default") == 1, timeout=10, message="message not dead-lettered")
    if hold in LEFT_TO_THE_LEDGER:
        # (the limit left the connection busy, and the ledger replaced it to record each outcome)
        assert one_thread.log().count(CONNECTION_REPLACED) >= replaced_before + 2

    # When a plain probe runs next, on the same worker thread
    after = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 10})

    # Then it succeeds, recorded as usual
    after = wait_job(after.pk, timeout=15)
    assert after.status == Status.SUCCEEDED, after.last_error
    attempt = after.attempt_set.get()
    assert attempt.outcome == Outcome.SUCCEEDED
    assert attempt.worker_id == attempts[-1].worker_id
    assert after.result["attempt"] == 1
    assert ProbeRun.objects.filter(job_id=after.pk).count() == 1
    assert dead_letters(broker, "default") == 1

    # And the interrupted queries were cancelled, not left running: what the actor wrote in its
    # transaction is rolled back, even a COMMIT still running its deferred trigger
    wait_for(lambda: not sessions_sleeping_in_sql(), timeout=5, message="interrupted query still running")
    assert ProbeRun.objects.filter(job_id=job.pk).count() == 0
