"""Chaos tier: real processes killed, services stopped and restarted; prints a table of what survived."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.db import connection
from django.db.models import Count

from apps.jobs.models import Job
from apps.workloads.models import ProbeRun
from tests.live import ARTIFACTS, WorkerProcess, mark_tier, require_services, wait_for


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, pytest.mark.chaos)


@dataclass
class Row:
    scenario: str
    submitted: int
    succeeded: int
    failed: int
    lost: int
    doubled: int
    recovery_s: float
    note: str = ""


ROWS: list[Row] = []
HEADER = ("scenario", "submitted", "succeeded", "failed", "lost", "run twice", "recovery s", "note")


def table() -> str:
    widths = [44, 9, 9, 6, 4, 9, 10, 0]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)).rstrip()]
    for row in ROWS:
        cells = (
            row.scenario,
            row.submitted,
            row.succeeded,
            row.failed,
            row.lost,
            row.doubled,
            f"{row.recovery_s:.1f}",
            row.note,
        )
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    terminalreporter.section("chaos: every job accounted for")
    terminalreporter.write_line(table())
    (ARTIFACTS / "chaos").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "chaos" / "report.txt").write_text(table() + "\n")


def settle(job_ids: list[Any], *, timeout: float) -> float:
    """Wait until every job is final (or the timeout passes); returns when that happened (monotonic)."""
    ids = [str(job_id) for job_id in job_ids]

    def all_final() -> bool:
        return Job.objects.filter(pk__in=ids, status__in=Job.FINAL_STATUSES).count() == len(ids)

    try:
        wait_for(all_final, timeout=timeout, message="jobs still open", interval=0.25)
    except AssertionError:
        pass
    return time.monotonic()


def tally(scenario: str, job_ids: list[Any], *, since: float, until: float, note: str = "") -> Row:
    """Count the outcome of `job_ids`; lost = missing from the ledger or never finished."""
    ids = [str(job_id) for job_id in job_ids]
    by_status = dict(Job.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("id")))
    final = sum(by_status.get(status, 0) for status in Job.FINAL_STATUSES)
    doubled = (
        ProbeRun.objects.filter(job_id__in=ids)
        .values("job_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    row = Row(
        scenario=scenario,
        submitted=len(ids),
        succeeded=by_status.get(Job.Status.SUCCEEDED, 0),
        failed=by_status.get(Job.Status.FAILED, 0),
        lost=len(ids) - final,
        doubled=doubled,
        recovery_s=max(0.0, until - since),
        note=note,
    )
    ROWS.append(row)
    return row


@pytest.fixture(scope="session", autouse=True)
def services_up() -> None:
    require_services()
    if not shutil.which("rabbitmqctl") or not shutil.which("pg_ctlcluster"):
        message = (
            "the chaos tier stops and starts the local RabbitMQ and PostgreSQL (rabbitmqctl, pg_ctlcluster)"
        )
        if os.environ.get("CI") or os.environ.get("TEST_REQUIRE_SERVICES"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def broker() -> dramatiq.Broker:
    return dramatiq.get_broker()


class Rabbit:
    """The local RabbitMQ node, stopped and started with rabbitmqctl."""

    def ctl(self, *args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup")

    def close_all_connections(self) -> None:
        self.ctl("close_all_connections", "--global", "chaos test")


class Postgres:
    """The local PostgreSQL cluster, restarted with pg_ctlcluster."""

    version = sorted(os.listdir("/etc/postgresql"))[0] if os.path.isdir("/etc/postgresql") else ""

    def ctl(self, action: str) -> None:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", action, "-m", "fast"]
            if action in ("restart", "stop")
            else ["pg_ctlcluster", "--skip-systemctl-redirect", self.version, "main", action],
            check=False,
            capture_output=True,
            timeout=120,
        )

    def restart(self) -> None:
        self.ctl("restart")

    def ensure_running(self) -> None:
        self.ctl("start")


@pytest.fixture
def rabbit() -> Iterator[Rabbit]:
    node = Rabbit()
    yield node
    node.ctl("start_app")  # restore the service whatever the scenario did
    node.ctl("await_startup")


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    cluster = Postgres()
    yield cluster
    cluster.ensure_running()
    wait_for(_db_answers, timeout=60, message="PostgreSQL did not come back")


def _db_answers() -> bool:
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True


@pytest.fixture
def workers(
    django_db_setup: None,
    django_db_blocker: Any,
    transactional_db: None,
    broker: dramatiq.Broker,
    request: pytest.FixtureRequest,
) -> Iterator[list[WorkerProcess]]:
    """Supervised workers for one scenario (two, for the racing scenario), on empty queues."""
    del broker.connection  # drop this thread's connection: a previous scenario may have had it closed
    broker.flush_all()
    count = getattr(request, "param", 1)
    started = []
    for index in range(count):
        worker = WorkerProcess(
            f"{request.node.name}-{index}", tier="chaos", threads=8, extra_env={"JOBS_RELAY_GRACE_S": "1"}
        )
        worker.start()
        worker.supervise()
        started.append(worker)
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture
def worker_pair(
    django_db_setup: None,
    django_db_blocker: Any,
    transactional_db: None,
    broker: dramatiq.Broker,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two workers, A and B, not started and not supervised: the scenario starts and restarts them."""
    del broker.connection  # drop this thread's connection: a previous scenario may have had it closed
    broker.flush_all()
    pair = tuple(
        WorkerProcess(
            f"{request.node.name}-{name}", tier="chaos", threads=8, extra_env={"JOBS_RELAY_GRACE_S": "1"}
        )
        for name in "AB"
    )
    try:
        yield pair
    finally:
        for worker in pair:
            worker.stop()
