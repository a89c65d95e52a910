"""The register of workers with live worker processes: each records itself, and its clean stop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.jobs import runtime
from apps.jobs.models import Worker
from tests.live import QUEUES, WorkerProcess, wait_for


def _row_of(process: WorkerProcess) -> Worker | None:
    """The register's row of `process`'s worker process (one: rundramatiq runs with --processes 1)."""
    pids = process.worker_pids()
    return Worker.objects.filter(host=runtime.HOSTNAME, pid__in=pids).order_by("-started_at").first()


@pytest.fixture
def hb_worker(worker: WorkerProcess) -> Iterator[WorkerProcess]:
    """A worker of the test's own, beside the shared one, that the test may stop."""
    # Its own metrics port: the shared worker holds the default one (the test process's settings
    # exported dramatiq_prom_port, which outranks the PROMETHEUS_PORT=0 that WorkerProcess sets).
    process = WorkerProcess("hb", tier="integration", threads=2, extra_env={"dramatiq_prom_port": "0"})
    process.start()
    yield process
    process.stop()


def test_worker__records_itself_within_seconds(worker: WorkerProcess) -> None:
    row = wait_for(lambda: _row_of(worker), timeout=10, message="the worker never recorded itself")

    assert row.pid in worker.worker_pids()
    assert row.queues == sorted(QUEUES)
    assert row.threads == worker.threads
    assert row.stopped_at is None
    # And it keeps heartbeating (JOBS_HEARTBEAT_INTERVAL_S=1 in the worker's environment)
    wait_for(
        lambda: Worker.objects.get(pk=row.pk).last_seen_at > row.last_seen_at,
        timeout=10,
        message="the worker sent no second heartbeat",
    )


def test_worker__a_clean_stop_is_recorded(hb_worker: WorkerProcess) -> None:
    row = wait_for(lambda: _row_of(hb_worker), timeout=10, message="the worker never recorded itself")
    assert (row.threads, row.stopped_at) == (2, None)

    hb_worker.shutdown()

    row.refresh_from_db()
    assert row.stopped_at is not None
    assert row.jobs_in_progress == 0
