"""Live processes for the integration and chaos tiers: workers, and waiting on the ledger and RabbitMQ."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest
from django.conf import settings
from django.db import DatabaseError, connection

from apps.jobs.models import Job

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
#: The queues of the seed's actors; each comes with its .DQ and .XQ.
QUEUES = ["default", "emails", "reports", "batch"]


def require_services() -> None:
    """Skip on a laptop without the services; fail under CI, which must never go green by skipping."""
    problems = []
    try:
        pika.BlockingConnection(pika.URLParameters(settings.RABBITMQ_URL)).close()
    except Exception as exc:
        problems.append(f"RabbitMQ at {settings.RABBITMQ_URL} is unreachable: {exc!r}")
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        problems.append("DATABASE_URL must point at PostgreSQL for these tests")
    if problems:
        message = "; ".join(problems)
        if os.environ.get("CI") or os.environ.get("TEST_REQUIRE_SERVICES"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def mark_tier(items: list[pytest.Item], folder: Path, marker: pytest.MarkDecorator) -> None:
    for item in items:
        if folder in Path(item.fspath).parents:
            item.add_marker(marker)


def worker_database_url() -> str:
    """DATABASE_URL pointing a worker at the test database pytest-django created."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


class WorkerProcess:
    """One `manage.py rundramatiq` (a dramatiq master and its worker process), logging to a file.

    With `supervise()`, it is restarted whenever it exits, as systemd or Kubernetes would.
    """

    def __init__(
        self,
        name: str,
        *,
        tier: str,
        threads: int = 4,
        shutdown_timeout_ms: int = 10_000,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.threads = threads
        self.shutdown_timeout_ms = shutdown_timeout_ms
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._supervisor: threading.Thread | None = None
        self._supervising = False
        (ARTIFACTS / tier).mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / tier / f"worker-{name}.log"
        self._log = None

    def start(self, *, wait: bool = True) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": worker_database_url(),
            "RABBITMQ_URL": settings.RABBITMQ_URL,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "PROMETHEUS_PORT": "0",
            "JOBS_HEARTBEAT_INTERVAL_S": "1",
            "JOBS_KEEPER_INTERVAL_S": "0.5",
            "LOG_LEVEL": "INFO",
            **self.extra_env,
        }
        if self._log is None:
            self._log = open(self.log_path, "a")
        self._log.write(f"\n===== start {time.strftime('%H:%M:%S')} =====\n")
        self._log.flush()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "rundramatiq",
                "--processes",
                "1",
                "--threads",
                str(self.threads),
                "--worker-shutdown-timeout",
                str(self.shutdown_timeout_ms),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            wait_for(
                self._ready, timeout=30, message=f"worker {self.name} did not start; see {self.log_path}"
            )

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"worker {self.name} exited with {self.process.returncode}; see {self.log_path}"
            )
        started = self.log().rsplit("===== start", 1)[-1]
        return "Worker process is ready for action" in started and all(
            queue_consumers(queue) > 0 for queue in QUEUES
        )

    def supervise(self) -> None:
        """Restart the worker whenever it exits (dramatiq's master exits when a worker process dies)."""
        self._supervising = True

        def watch() -> None:
            while self._supervising:
                process = self.process
                if process is not None and process.poll() is not None and self._supervising:
                    self.restarts += 1
                    self.start(wait=False)
                time.sleep(0.2)

        self._supervisor = threading.Thread(target=watch, name=f"supervise-{self.name}", daemon=True)
        self._supervisor.start()

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the master) running jobs."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except FileNotFoundError:
            return []

    @staticmethod
    def database_url() -> str:
        return worker_database_url()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> None:
        """SIGTERM to the master, as an orchestrator stopping the worker sends (it tells its children)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGTERM)

    def shutdown(self, timeout: float = 30) -> float:
        """SIGTERM, as a deploy sends, and wait until the worker has exited; returns how long that took (s).

        Unlike `stop()`, the log stays open and `start()` brings the worker back. Not for a supervised
        worker (the supervisor would restart it at once).
        """
        assert self.process is not None and self._supervisor is None, (
            "shutdown() of an unstarted or supervised worker"
        )
        began = time.monotonic()
        self.terminate()
        if not self._wait_or_kill(timeout):
            raise AssertionError(
                f"worker {self.name} was still running {timeout} s after SIGTERM; see {self.log_path}"
            )
        return time.monotonic() - began

    def _wait_or_kill(self, timeout: float) -> bool:
        """Wait for the process to exit; SIGKILL it after `timeout`. True if it exited by itself."""
        assert self.process is not None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return False
        return True

    def stop(self, timeout: float = 20) -> None:
        self._supervising = False
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        if self.process is not None and self.process.poll() is None:
            self.terminate()
            self._wait_or_kill(timeout)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def queue_consumers(queue: str) -> int:
    """Consumers of `queue` (0 when it does not exist)."""
    return _queue_declare(queue).consumer_count


def queue_messages(queue: str) -> int:
    """Messages ready in `queue` (not counting unacknowledged ones)."""
    return _queue_declare(queue).message_count


def _queue_declare(queue: str) -> Any:
    connection_ = pika.BlockingConnection(pika.URLParameters(settings.RABBITMQ_URL))
    try:
        return connection_.channel().queue_declare(queue, passive=True).method
    except pika.exceptions.ChannelClosedByBroker:
        return pika.spec.Queue.DeclareOk(queue, 0, 0)
    finally:
        if connection_.is_open:
            connection_.close()


def wait_for(predicate: Callable[[], Any], *, timeout: float, message: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something true; database errors (a restart) count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except DatabaseError:
            connection.close()
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        time.sleep(interval)


def wait_job(job_id: Any, *statuses: str, timeout: float = 30) -> Job:
    """Poll the ledger until the job reaches one of `statuses` (default: any final status)."""
    wanted = statuses or Job.FINAL_STATUSES

    def reached() -> Job | None:
        job = Job.objects.get(pk=job_id)
        return job if job.status in wanted else None

    try:
        return wait_for(reached, timeout=timeout, message=f"job {job_id} never reached {wanted}")
    except AssertionError:
        job = Job.objects.get(pk=job_id)
        raise AssertionError(
            f"job {job_id} is {job.status} after {timeout} s (wanted {wanted}); last error: {job.last_error}"
        ) from None
