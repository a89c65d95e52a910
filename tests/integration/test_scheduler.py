"""The scheduler process: it survives the death of its periodiq program and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from tests.live import ARTIFACTS, ROOT, WorkerProcess, wait_for


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def test_jobs_scheduler__restarts_its_scheduler_when_it_dies(worker: WorkerProcess) -> None:
    log_path = ARTIFACTS / "integration" / "scheduler.log"
    env = {**os.environ, "DATABASE_URL": worker.database_url(), "RABBITMQ_URL": settings.RABBITMQ_URL}
    with open(log_path, "w") as log:
        command = subprocess.Popen(
            [sys.executable, "manage.py", "jobs_scheduler"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        first = wait_for(lambda: children(command.pid), timeout=20, message="no scheduler started")[0]
        wait_for(
            lambda: "jobs.sync_external_data" in log_path.read_text(), timeout=30, message="no timetable"
        )
        # When the scheduler program dies (RabbitMQ and PostgreSQL both gone at a tick, or a kill)
        os.kill(first, signal.SIGKILL)
        # Then the command starts another one, without anybody restarting it by hand
        second = wait_for(
            lambda: [c for c in children(command.pid) if c != first],
            timeout=20,
            message="scheduler not restarted",
        )[0]
        assert second != first
        assert "restarting" in log_path.read_text()
        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=20) == 0
        # and its scheduler program stopped with it
        wait_for(lambda: not Path(f"/proc/{second}").exists(), timeout=10, message="scheduler left running")
    finally:
        if command.poll() is None:
            command.kill()
