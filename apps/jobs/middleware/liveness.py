"""Heartbeats for the jobs a worker process runs, and the sweep that recovers jobs whose worker is gone."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import dramatiq
from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from apps.jobs import runtime
from apps.jobs.middleware.keeper import KeeperMiddleware, services

#: How long the shutdown waits for a heartbeat in flight before recording the stop (s): a heartbeat
#: written after the stop would clear it again.
STOP_JOIN_TIMEOUT_S = 5.0


class Liveness(KeeperMiddleware):
    """Keeps the lease of every attempt this process runs, and recovers orphans of dead workers.

    Its own thread, with its own database connection, and nothing else on it: a publish blocked by
    RabbitMQ (a memory alarm, a stalled network) must never stop the heartbeats, or another host
    would take over jobs that are still running here.

    With each job heartbeat it also records this process in the register of workers (the console's
    Workers page), and records the clean stop at shutdown.
    """

    thread_name = "jobs-liveness"

    def __init__(self) -> None:
        super().__init__()
        self._next_heartbeat = 0.0
        self._worker: dramatiq.Worker | None = None
        self._started_at: datetime | None = None
        self._worker_heartbeat_failing = False

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Kept for its queues and threads, which the worker heartbeat reports.
        self._worker = worker
        self._started_at = timezone.now()
        super().after_worker_boot(broker, worker)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        super().after_worker_shutdown(broker, worker)
        if self.thread is not None:
            self.thread.join(STOP_JOIN_TIMEOUT_S)
        try:
            _workers().worker_stopped(worker_id=runtime.worker_id())
        except Exception:
            # The process is exiting: a missing stop only shows it as stale once its lease expires.
            self.logger.warning("Could not record this worker's stop.", exc_info=True)

    def run_once(self, now: float) -> None:
        healthy_since = self.thread.healthy_since if self.thread is not None else None
        if now >= self._next_heartbeat or healthy_since is None:
            services().job_heartbeat(running=runtime.running())
            self._next_heartbeat = now + settings.JOBS_HEARTBEAT_INTERVAL_S
            self._worker_heartbeat()
        # After an outage, give every live worker time to heartbeat before judging leases.
        if healthy_since is not None and now - healthy_since > 2 * settings.JOBS_HEARTBEAT_INTERVAL_S:
            services().jobs_recover_orphans()

    def _worker_heartbeat(self) -> None:
        """Record this process in the register of workers; never raises.

        After the job heartbeat, and guarded: the register is for the console, job leases matter more.
        """
        try:
            _workers().worker_heartbeat(
                worker_id=runtime.worker_id(),
                host=runtime.HOSTNAME,
                pid=os.getpid(),
                queues=_consumed_queues(self._worker),
                threads=self._worker.worker_threads if self._worker is not None else 0,
                started_at=self._started_at or timezone.now(),
                jobs_in_progress=len(runtime.running()),
            )
        except Exception as exc:
            if isinstance(exc, DatabaseError):
                # A broken connection left open would fail the next job heartbeat too.
                connections.close_all()
            # The traceback once per run of failures, so a lasting fault does not flood the log.
            self.logger.warning(
                "Worker heartbeat failed (%s); job heartbeats go on.",
                exc,
                exc_info=not self._worker_heartbeat_failing,
            )
            self._worker_heartbeat_failing = True
        else:
            self._worker_heartbeat_failing = False


def _consumed_queues(worker: dramatiq.Worker | None) -> list[str]:
    """The queues `worker` consumes, by name (its delay queues count as their queue)."""
    if worker is None:
        return []
    # A copy first: the consumer threads add to the dict when a queue is declared later.
    return sorted({dramatiq.common.q_name(name) for name in list(worker.consumers)})


def _workers() -> Any:
    """apps.jobs.services.workers, imported on first use (models are not importable yet when middleware
    is built), looked up on each call so tests can replace its functions."""
    from apps.jobs.services import workers

    return workers
