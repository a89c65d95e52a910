"""Chaos scenarios: crashes, outages, duplicates and bad messages, with every job accounted for."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import dramatiq
import pika
import pytest
from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count

from apps.jobs import services
from apps.jobs.models import Job, JobAttempt
from apps.workloads.actors import probe
from apps.workloads.models import ProbeRun
from tests.chaos.conftest import Postgres, Rabbit, settle, tally
from tests.live import ROOT, WorkerProcess, queue_messages, wait_for

Status = Job.Status


def submit_probes(count: int, **kwargs: object) -> list[str]:
    with transaction.atomic():
        return [str(services.job_submit(actor="jobs.probe", kwargs=kwargs).pk) for _ in range(count)]


def running_count(ids: list[str]) -> int:
    return Job.objects.filter(pk__in=ids, status=Status.RUNNING).count()


def assert_accounted(row) -> None:
    assert row.lost == 0, row
    assert row.doubled == 0, row


def test_kill_9_of_a_worker_mid_job(workers: list[WorkerProcess]) -> None:
    ids = submit_probes(20, sleep_ms=2000)
    wait_for(lambda: running_count(ids) >= 4, timeout=30, message="jobs never started")
    victim = JobAttempt.objects.filter(job_id__in=ids, outcome="running").values_list(
        "worker_pid", flat=True
    )[0]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    done = settle(ids, timeout=120)
    row = tally(
        "kill -9 of a worker mid-job",
        ids,
        since=killed_at,
        until=done,
        note=f"worker restarted {workers[0].restarts}x",
    )
    assert_accounted(row)
    assert row.succeeded == 20
    assert JobAttempt.objects.filter(job_id__in=ids, outcome="worker_lost").exists()


def test_rabbitmq_stop_app_start_app_with_1000_jobs_in_flight(
    workers: list[WorkerProcess], rabbit: Rabbit
) -> None:
    # 250 ms each: 16 worker threads need ~16 s for them all, so most are still in flight when the
    # outage starts, however fast the after-commit publish of the 1000 messages went.
    ids = submit_probes(1000, sleep_ms=250)
    rabbit.stop_app()
    in_flight = Job.objects.filter(pk__in=ids).exclude(status__in=Job.FINAL_STATUSES).count()
    assert in_flight > 100, "the outage should hit jobs in flight"
    time.sleep(3)
    rabbit.start_app()
    back_at = time.monotonic()
    done = settle(ids, timeout=240)
    row = tally(
        "rabbitmqctl stop_app/start_app, 1000 jobs",
        ids,
        since=back_at,
        until=done,
        note=f"{in_flight} in flight at the stop",
    )
    assert_accounted(row)
    assert row.succeeded == 1000


def test_rabbitmq_close_all_connections(workers: list[WorkerProcess], rabbit: Rabbit) -> None:
    ids = submit_probes(300, sleep_ms=200)
    wait_for(lambda: running_count(ids) >= 4, timeout=30, message="jobs never started")
    rabbit.close_all_connections()
    closed_at = time.monotonic()
    done = settle(ids, timeout=180)
    row = tally("rabbitmqctl close_all_connections", ids, since=closed_at, until=done)
    assert_accounted(row)
    assert row.succeeded == 300


def test_postgresql_restart_while_jobs_run(workers: list[WorkerProcess], postgres: Postgres) -> None:
    ids = submit_probes(100, sleep_ms=300)
    wait_for(lambda: running_count(ids) >= 4, timeout=30, message="jobs never started")
    restarted_at = time.monotonic()
    postgres.restart()
    done = settle(ids, timeout=180)
    row = tally("PostgreSQL restart while jobs run", ids, since=restarted_at, until=done)
    assert_accounted(row)
    assert row.succeeded == 100


def test_crash_between_commit_and_publish(workers: list[WorkerProcess]) -> None:
    # A process commits 10 jobs and dies before publishing any of them.
    script = (
        "import os\n"
        "from django.db import transaction\n"
        "from apps.jobs import services\n"
        "from apps.jobs.services import submission\n"
        "submission.job_publish = lambda **kwargs: os._exit(9)\n"
        "with transaction.atomic():\n"
        "    ids = [str(services.job_submit(actor='jobs.probe').pk) for _ in range(10)]\n"
        "    print(' '.join(ids), flush=True)\n"
    )
    env = {**os.environ, "DATABASE_URL": workers[0].database_url(), "JOBS_RELAY_GRACE_S": "1"}
    crashed = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    crashed_at = time.monotonic()
    assert crashed.returncode == 9, crashed.stderr
    ids = crashed.stdout.split()
    assert len(ids) == 10
    done = settle(ids, timeout=60)
    row = tally(
        "crash between commit and publish", ids, since=crashed_at, until=done, note="published by the relay"
    )
    assert_accounted(row)
    assert row.succeeded == 10


def test_rabbitmq_down_while_jobs_are_submitted(workers: list[WorkerProcess], rabbit: Rabbit) -> None:
    rabbit.stop_app()
    try:
        ids = submit_probes(50)
        ids += [probe.send().message_id for _ in range(10)]  # plain sends are kept by the ledger too
        assert Job.objects.filter(pk__in=ids, status=Status.PENDING).count() == 60
    finally:
        rabbit.start_app()
    back_at = time.monotonic()
    done = settle(ids, timeout=120)
    row = tally(
        "RabbitMQ down while jobs are submitted",
        ids,
        since=back_at,
        until=done,
        note="accepted as pending, relayed",
    )
    assert_accounted(row)
    assert row.succeeded == 60


def test_poison_job_that_kills_its_worker(workers: list[WorkerProcess], broker: dramatiq.Broker) -> None:
    job = services.job_submit(actor="jobs.probe", kwargs={"crash_attempts": 99}, options={"max_retries": 2})
    started_at = time.monotonic()
    done = settle([job.pk], timeout=120)
    row = tally(
        "poison job (kills its worker)",
        [job.pk],
        since=started_at,
        until=done,
        note=f"quarantined after {workers[0].restarts} worker deaths",
    )
    assert_accounted(row)
    job.refresh_from_db()
    assert job.status == Status.FAILED and job.last_error.startswith("Worker lost")
    assert job.attempts == 3
    wait_for(
        lambda: queue_messages("default.XQ") == 1, timeout=10, message="poison message not dead-lettered"
    )


def _publish_raw(body: bytes, queue: str = "default") -> None:
    connection = pika.BlockingConnection(pika.URLParameters(settings.RABBITMQ_URL))
    try:
        connection.channel().basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def test_undecodable_message(workers: list[WorkerProcess]) -> None:
    sent_at = time.monotonic()
    _publish_raw(b"\xff\xfe this is not a job")
    ids = submit_probes(5)
    dead = wait_for(
        lambda: Job.objects.filter(actor_name="(undecodable message)").first(),
        timeout=30,
        message="undecodable message not recorded",
    )
    done = settle(ids, timeout=60)
    row = tally(
        "undecodable message",
        [*ids, dead.pk],
        since=sent_at,
        until=done,
        note="dead-lettered, visible as failed",
    )
    assert_accounted(row)
    assert (row.succeeded, row.failed) == (5, 1)
    wait_for(lambda: queue_messages("default.XQ") == 1, timeout=10, message="not dead-lettered")
    assert all(worker.alive() and worker.restarts == 0 for worker in workers)


def test_message_for_an_unknown_actor(workers: list[WorkerProcess], broker: dramatiq.Broker) -> None:
    sent_at = time.monotonic()
    message = dramatiq.Message(
        queue_name="default", actor_name="jobs.no_such_actor", args=(), kwargs={}, options={}
    )
    broker.enqueue(message)
    ids = submit_probes(5)
    done = settle([*ids, message.message_id], timeout=60)
    row = tally(
        "message for an unknown actor",
        [*ids, message.message_id],
        since=sent_at,
        until=done,
        note="dead-lettered, visible as failed",
    )
    assert_accounted(row)
    assert (row.succeeded, row.failed) == (5, 1)
    assert "No actor named" in Job.objects.get(pk=message.message_id).last_error
    wait_for(lambda: queue_messages("default.XQ") == 1, timeout=10, message="not dead-lettered")
    assert all(worker.alive() and worker.restarts == 0 for worker in workers)


@pytest.mark.parametrize("workers", [2], indirect=True)
def test_two_workers_racing_on_redelivered_messages(workers: list[WorkerProcess], rabbit: Rabbit) -> None:
    ids = submit_probes(16, sleep_ms=3000)
    wait_for(lambda: running_count(ids) >= 8, timeout=30, message="jobs never started")
    # Every unacked delivery goes back to the queue and to the other worker, while the first still runs it.
    rabbit.close_all_connections()
    closed_at = time.monotonic()
    done = settle(ids, timeout=120)
    row = tally("two workers racing on redelivered messages", ids, since=closed_at, until=done)
    assert_accounted(row)
    assert row.succeeded == 16


#: A deploy, three times over: worker A stopped with SIGTERM and started again while B runs, then B.
#: The --worker-shutdown-timeout (ms) of each round: the short ones abandon running probes at the
#: timeout (RabbitMQ redelivers their messages to the other, live worker); the long one lets them finish.
ROLLING_ROUNDS_MS = (1000, 6000, 1500)


class ProbeStream(threading.Thread):
    """Submits probes (sleep_ms 200..3000) at a steady `rate` per second, until stopped or `limit`.

    The rate is below what two workers can run, so a live worker has idle threads when the other
    one stops: a message RabbitMQ hands back is started at once, while the stopping worker still lives.
    """

    def __init__(self, broker: dramatiq.Broker, *, rate: float, limit: int) -> None:
        super().__init__(name="probe-stream", daemon=True)
        self.broker = broker
        self.rate = rate
        self.limit = limit
        self.ids: list[str] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._random = random.Random(20)

    def run(self) -> None:
        began = time.monotonic()
        try:
            while len(self.ids) < self.limit:
                due = began + len(self.ids) / self.rate
                if self.stopping.wait(max(0.0, due - time.monotonic())):
                    break
                kwargs = {"sleep_ms": self._random.randint(200, 3000)}
                self.ids.append(str(services.job_submit(actor="jobs.probe", kwargs=kwargs).pk))
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            connections.close_all()  # this thread's connections
            del self.broker.connection

    def finish(self) -> list[str]:
        self.stopping.set()
        self.join(30)
        assert not self.is_alive(), "the probe stream did not stop"
        assert self.error is None, f"submitting probes failed: {self.error!r}"
        return list(self.ids)


def _running_under(worker: WorkerProcess, ids: list[str]) -> int:
    """Attempts of `ids` running now in `worker`'s worker process."""
    return JobAttempt.objects.filter(
        job_id__in=ids, outcome=JobAttempt.Outcome.RUNNING, worker_pid__in=worker.worker_pids()
    ).count()


def _jobs_with_attempts(ids: list[str], **filters: object) -> int:
    return JobAttempt.objects.filter(job_id__in=ids, **filters).values("job_id").distinct().count()


def _stuck(ids: list[str], workers: tuple[WorkerProcess, ...]) -> str:
    """What became of the jobs that never finished: status, last attempt, duplicate deliveries dropped."""
    open_jobs = list(Job.objects.filter(pk__in=ids).exclude(status__in=Job.FINAL_STATUSES))
    if not open_jobs:
        return ""
    statuses = Counter(job.status for job in open_jobs)
    last = Counter(
        JobAttempt.objects.filter(job_id=job.pk, number=job.attempts)
        .values_list("outcome", flat=True)
        .first()
        for job in open_jobs
    )
    drops = [
        line
        for worker in workers
        for line in worker.log().splitlines()
        if "duplicate delivery is dropped" in line
    ]
    dropped = sum(any(str(job.pk) in line for line in drops) for job in open_jobs)
    return (
        "stuck: "
        + ", ".join(f"{status}={n}" for status, n in statuses.most_common())
        + "; last attempt "
        + ", ".join(f"{outcome}={n}" for outcome, n in last.most_common())
        + f"; {dropped} had a redelivery dropped as a duplicate"
    )


def _run_twice(ids: list[str]) -> str:
    """The jobs whose probe completed more than once: which attempts completed, and what the ledger says."""
    doubled = (
        ProbeRun.objects.filter(job_id__in=ids)
        .values("job_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("job_id", flat=True)
    )
    return "; ".join(
        f"job {job_id}: probe completed in attempts "
        + str(sorted(ProbeRun.objects.filter(job_id=job_id).values_list("attempt", flat=True)))
        + ", ledger attempts "
        + ", ".join(
            f"{number} {outcome} (pid {pid})"
            for number, outcome, pid in JobAttempt.objects.filter(job_id=job_id).values_list(
                "number", "outcome", "worker_pid"
            )
        )
        for job_id in doubled
    )


def test_two_workers_rolling_restart(
    worker_pair: tuple[WorkerProcess, WorkerProcess], broker: dramatiq.Broker
) -> None:
    a, b = worker_pair
    for worker in worker_pair:
        worker.shutdown_timeout_ms = ROLLING_ROUNDS_MS[0]
        worker.start()
    stream = ProbeStream(broker, rate=4, limit=500)
    stream.start()
    stops: list[float] = []
    try:
        for index, timeout_ms in enumerate(ROLLING_ROUNDS_MS):
            following_ms = ROLLING_ROUNDS_MS[min(index + 1, len(ROLLING_ROUNDS_MS) - 1)]
            for victim, other in ((a, b), (b, a)):
                assert other.alive(), f"worker {other.name} died; see {other.log_path}"
                # Stop it with jobs mid-run, while the other one has room to take their messages.
                wait_for(
                    lambda victim=victim, other=other: (
                        _running_under(victim, list(stream.ids)) >= 3
                        and _running_under(other, list(stream.ids)) < other.threads
                    ),
                    timeout=30,
                    message=f"worker {victim.name} never ran 3 jobs with {other.name} not full",
                )
                stops.append(victim.shutdown(timeout=timeout_ms / 1000 + 30))
                victim.shutdown_timeout_ms = following_ms
                victim.start()
    finally:
        ids = stream.finish()
    back_at = time.monotonic()
    done = settle(ids, timeout=60)
    interrupted = _jobs_with_attempts(ids, outcome=JobAttempt.Outcome.INTERRUPTED)
    redelivered = _jobs_with_attempts(ids, redelivered=True)
    stuck = _stuck(ids, worker_pair)
    row = tally(
        "two workers, rolling restart x3",
        ids,
        since=back_at,
        until=done,
        note=(
            f"{interrupted} interrupted, {redelivered} redelivered; "
            f"SIGTERM to exit {min(stops):.1f}-{max(stops):.1f} s" + (f"; {stuck}" if stuck else "")
        ),
    )
    assert row.lost == 0, f"{row.lost} of {row.submitted} jobs never finished; {stuck}"
    assert row.doubled == 0, f"{row.doubled} jobs ran twice: {_run_twice(ids)}"
    assert_accounted(row)
    assert row.succeeded == row.submitted, row
    assert interrupted > 0, "no job was mid-run at a short shutdown timeout: the scenario tested nothing"
