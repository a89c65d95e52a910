"""Unit-tier fixtures: Dramatiq's in-memory StubBroker, a worker on it, and reading the ledger after a run."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from django.utils import timezone
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker

from apps.jobs import runtime, services, signals
from apps.jobs.models import Job, JobAttempt


@pytest.fixture
def stub_broker() -> Iterator[StubBroker]:
    broker = dramatiq.get_broker()
    assert isinstance(broker, StubBroker), "unit tests run with project.test_settings"
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture(scope="session")
def _process_booted() -> None:
    # The CLI emits process_boot once in each worker process; hand-built workers must do it
    # themselves, or TimeLimit never starts its timer thread (which can start only once).
    dramatiq.get_broker().emit_after("process_boot")


@pytest.fixture
def stub_worker(
    stub_broker: StubBroker, transactional_db: None, _process_booted: None
) -> Iterator[dramatiq.Worker]:
    """A worker with two threads; its threads use their own DB connections, hence transactional_db."""
    worker = start_worker(stub_broker)
    yield worker
    worker.stop()


def start_worker(broker: StubBroker) -> dramatiq.Worker:
    """A started worker with two threads, for tests that must prepare the ledger before it runs."""
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    return worker


def run_all(broker: StubBroker, worker: dramatiq.Worker, *queues: str, timeout_ms: int = 20_000) -> None:
    """Process everything on `queues` (default: all), including delayed retries, without raising."""
    for queue in queues or broker.get_declared_queues():
        broker.join(queue, timeout=timeout_ms, fail_fast=False)
    worker.join()


def run_job(broker: StubBroker, worker: dramatiq.Worker, job: Job, **run_kwargs: Any) -> Job:
    """Process every queue until idle, then return the job as the ledger has it."""
    run_all(broker, worker, **run_kwargs)
    job.refresh_from_db()
    return job


def attempt_outcomes(job: Job) -> list[str]:
    return list(job.attempt_set.order_by("number").values_list("outcome", flat=True))


def status_transitions(job: Job) -> list[str]:
    """The job's statuses in order, without "queued": the worker may start a job before the
    publish confirmation is recorded, and then the ledger rightly refuses to move it back."""
    statuses = list(job.events.order_by("at", "id").values_list("to_status", flat=True))
    if Job.Status.QUEUED in statuses:
        assert statuses.index(Job.Status.QUEUED) == 1, statuses
    return [status for status in statuses if status != Job.Status.QUEUED]


@pytest.fixture
def signal_log() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every ledger signal sent during the test, as (name, kwargs), from any thread."""
    log: list[tuple[str, dict[str, Any]]] = []
    receivers = {}
    for name in ("job_started", "job_progress", "job_succeeded", "job_retrying", "job_failed"):

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            log.append((_name, kwargs))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver, weak=False, dispatch_uid=f"tests.signal_log.{name}")
    yield log
    for name in receivers:
        getattr(signals, name).disconnect(dispatch_uid=f"tests.signal_log.{name}")


def worker_id_here(pid: int, start: str | None = None) -> str:
    """A worker id on this host for process `pid`: its real start time, or `start` (a reused pid)."""
    host, boot, _, _ = runtime.worker_id().split(":")
    if start is None:
        start = runtime._start_ticks(pid) or "0"
    return f"{host}:{boot}:{pid}:{start}"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def running_job(
    job_factory: Callable[..., Job], *, worker: str, heartbeat_age_s: float, **fields: Any
) -> Job:
    """A job running attempt 1 on `worker` (a worker id), last heartbeat `heartbeat_age_s` ago."""
    now = timezone.now()
    job = job_factory(
        status=Job.Status.RUNNING, attempts=1, heartbeat_at=now - timedelta(seconds=heartbeat_age_s), **fields
    )
    host, _, pid, _ = worker.split(":")
    JobAttempt.objects.create(
        job=job, number=1, worker_host=host, worker_pid=int(pid), worker_id=worker, started_at=now
    )
    return job


def message_of(job: Job, **options: Any) -> MessageProxy:
    """The delivery of `job`'s message, as a worker thread receives it."""
    return MessageProxy(services.job_message(job).copy(options={**job.options, **options}))
