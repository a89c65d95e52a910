"""Jobs through the real RabbitMQ and PostgreSQL with a live worker: success, retries, limits, crashes."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import dramatiq
import pytest
from django.db import transaction

from apps.jobs import services
from apps.jobs.models import Job, JobAttempt
from apps.workloads.models import Report
from tests.live import QUEUES, ROOT, WorkerProcess, queue_consumers, wait_for, wait_job

Status = Job.Status
Outcome = JobAttempt.Outcome


def dead_letters(broker: dramatiq.Broker, queue: str) -> int:
    return broker.get_queue_message_counts(queue)[2]


def test_worker__declares_every_queue_with_its_delay_and_dead_letter_queue(worker: WorkerProcess) -> None:
    for queue in QUEUES:
        assert queue_consumers(queue) >= 1
        assert queue_consumers(f"{queue}.DQ") >= 1
        # .XQ has no consumer, but it must exist: a passive declare of a missing queue fails.
        assert queue_consumers(f"{queue}.XQ") == 0


def test_jobs_submit_wait__prints_a_succeeded_probe(worker: WorkerProcess) -> None:
    # The command a user runs from the README, as a separate process.
    env = {**os.environ, "DATABASE_URL": worker.database_url()}
    completed = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "jobs_submit",
            "probe",
            "--kwargs",
            '{"sleep_ms": 200}',
            "--wait",
            "30",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    job = json.loads(completed.stdout)
    assert job["status"] == "succeeded"
    assert job["result"]["slept_ms"] >= 200
    assert [attempt["outcome"] for attempt in job["attempt_history"]] == ["succeeded"]


def test_probe__succeeds_end_to_end_with_progress(worker: WorkerProcess) -> None:
    job = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 1500})
    running = wait_job(job.pk, Status.RUNNING, Status.SUCCEEDED)
    job = wait_job(job.pk)
    assert job.status == Status.SUCCEEDED
    assert (job.progress_current, job.progress_total) == (1500, 1500)
    assert job.enqueued_at is not None and job.started_at is not None and job.finished_at is not None
    attempt = job.attempt_set.get()
    assert attempt.outcome == Outcome.SUCCEEDED
    assert attempt.worker_pid != os.getpid()
    assert running.attempts == 1


def test_failing_job__is_retried_with_backoff_then_dead_lettered(
    worker: WorkerProcess, broker: dramatiq.Broker
) -> None:
    # Given a probe that fails every attempt, allowed 2 retries (the probe's min_backoff is 500 ms)
    job = services.job_submit(actor="jobs.probe", kwargs={"fail_attempts": 99}, options={"max_retries": 2})
    # Then it ends failed after 3 attempts, each recorded, with growing waits between them
    job = wait_job(job.pk, timeout=40)
    assert job.status == Status.FAILED
    assert job.attempts == 3
    attempts = list(job.attempt_set.order_by("number"))
    assert [a.outcome for a in attempts] == [Outcome.RETRIED, Outcome.RETRIED, Outcome.FAILED]
    assert all(a.error_class.endswith("TransientFailure") for a in attempts)
    waits = [
        (later.started_at - earlier.finished_at).total_seconds()
        for earlier, later in itertools.pairwise(attempts)
    ]
    assert waits[0] >= 0.45, waits  # 500 ms x [1, 2) jitter
    assert waits[1] >= 0.95, waits  # doubled
    assert "TransientFailure" in job.last_traceback
    # And its message is in the queue's dead-letter queue
    wait_for(lambda: dead_letters(broker, "default") == 1, timeout=10, message="message not dead-lettered")


def test_permanent_error__is_not_retried(worker: WorkerProcess, broker: dramatiq.Broker) -> None:
    job = services.job_submit(actor="jobs.probe", kwargs={"permanent": True})
    job = wait_job(job.pk)
    assert job.status == Status.FAILED
    assert job.attempts == 1
    assert job.attempt_set.get().error_class.endswith("PermanentFailure")
    wait_for(lambda: dead_letters(broker, "default") == 1, timeout=10, message="message not dead-lettered")


def test_time_limit__stops_a_job_and_records_it(worker: WorkerProcess, broker: dramatiq.Broker) -> None:
    started = time.monotonic()
    job = services.job_submit(
        actor="jobs.probe",
        kwargs={"sleep_ms": 30_000},
        options={"time_limit": 1500, "soft_time_limit": 60_000, "max_retries": 0},
    )
    job = wait_job(job.pk, timeout=20)
    assert time.monotonic() - started < 15
    assert job.status == Status.FAILED
    attempt = job.attempt_set.get()
    assert attempt.error_class.endswith("TimeLimitExceeded")
    assert attempt.duration_ms < 5000
    assert job.progress_current < 30_000
    wait_for(lambda: dead_letters(broker, "default") == 1, timeout=10, message="message not dead-lettered")


def test_soft_time_limit__raises_a_catchable_error_before_the_hard_limit(worker: WorkerProcess) -> None:
    job = services.job_submit(
        actor="jobs.probe",
        kwargs={"sleep_ms": 30_000},
        options={"time_limit": 5000, "soft_time_limit": 1000, "max_retries": 0},
    )
    job = wait_job(job.pk, timeout=20)
    assert job.status == Status.FAILED
    attempt = job.attempt_set.get()
    assert attempt.error_class.endswith("SoftTimeLimitExceeded")
    assert attempt.duration_ms < 4000
    assert "soft time limit" in worker.log().lower()


def test_duplicate_delivery__of_a_succeeded_job_does_not_run_again(
    worker: WorkerProcess, broker: dramatiq.Broker
) -> None:
    job = wait_job(services.job_submit(actor="jobs.probe").pk)
    assert job.status == Status.SUCCEEDED
    events_before = job.events.count()
    # When RabbitMQ delivers the same message again (a lost ack, a requeue)
    broker.enqueue(services.job_message(job))
    wait_for(
        lambda: "duplicate delivery is dropped" in worker.log() and str(job.pk) in worker.log(),
        timeout=15,
        message="the duplicate was never delivered",
    )
    # Then the ledger is untouched and the message is gone (acked, not dead-lettered)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.events.count()) == (Status.SUCCEEDED, 1, events_before)
    assert broker.get_queue_message_counts("default") == (0, 0, 0)


def test_report_save__triggers_exactly_one_job_that_builds_it(worker: WorkerProcess) -> None:
    with transaction.atomic():
        report = Report.objects.create(type=Report.Type.JOBS)
        report.save()  # a second save of the same object triggers nothing
    jobs = Job.objects.filter(actor_name="jobs.generate_report", trigger_object_id=str(report.pk))
    assert jobs.count() == 1
    job = wait_job(jobs.get().pk)
    assert job.status == Status.SUCCEEDED, job.last_error
    report.refresh_from_db()
    assert report.job_id == job.pk
    assert report.file and report.row_count is not None
    assert job.result["rows"] == report.row_count


def test_report_save__rolled_back_publishes_nothing(worker: WorkerProcess, broker: dramatiq.Broker) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Report.objects.create(type=Report.Type.JOBS)
        raise RuntimeError("the request failed after the save")
    time.sleep(1)
    assert Job.objects.count() == 0
    assert broker.get_queue_message_counts("reports") == (0, 0, 0)
    assert "jobs.generate_report" not in worker.log().split("===== start")[-1]


def test_kill_9__a_job_whose_worker_died_is_redelivered_and_succeeds_on_attempt_2(
    worker: WorkerProcess,
) -> None:
    # Given a job running in a worker process
    job = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 4000})
    wait_job(job.pk, Status.RUNNING, timeout=20)
    pid = JobAttempt.objects.get(job=job, number=1).worker_pid
    # When that process is killed with SIGKILL (no exception, no ack, no ledger write)
    os.kill(pid, signal.SIGKILL)
    # (dramatiq's master exits when a worker process dies; a supervisor restarts it)
    assert worker.process.wait(timeout=20) != 0
    worker.stop()
    worker.start()
    # Then RabbitMQ redelivers the message and the job succeeds on a second, counted attempt
    job = wait_job(job.pk, timeout=40)
    assert job.status == Status.SUCCEEDED, job.last_error
    assert job.attempts == 2
    first, second = job.attempt_set.order_by("number")
    assert first.outcome == Outcome.WORKER_LOST and first.worker_pid == pid
    assert second.outcome == Outcome.SUCCEEDED and second.redelivered


def test_plain_send__is_recorded_in_the_ledger(worker: WorkerProcess) -> None:
    # Messages sent without job_submit (actor.send(), a scheduler tick) get a ledger row too.
    from apps.workloads.actors import probe
    from apps.workloads.schedules import cleanup_expired_sessions

    sent = probe.send(sleep_ms=10)
    tick = cleanup_expired_sessions.send_with_options(scheduled_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    job = wait_job(sent.message_id)
    assert (job.status, job.source, job.actor_name, job.kwargs) == (
        Status.SUCCEEDED,
        Job.Source.CODE,
        "jobs.probe",
        {"sleep_ms": 10},
    )
    tick_job = wait_job(tick.message_id)
    assert (tick_job.status, tick_job.source) == (Status.SUCCEEDED, Job.Source.SCHEDULE)
