"""Heartbeats for the jobs a worker process runs, and the sweep that recovers jobs whose worker is gone."""

from __future__ import annotations

from django.conf import settings

from apps.jobs import runtime
from apps.jobs.middleware.keeper import KeeperMiddleware, services


class Liveness(KeeperMiddleware):
    """Keeps the lease of every attempt this process runs, and recovers orphans of dead workers.

    Its own thread, with its own database connection, and nothing else on it: a publish blocked by
    RabbitMQ (a memory alarm, a stalled network) must never stop the heartbeats, or another host
    would take over jobs that are still running here.
    """

    thread_name = "jobs-liveness"

    def __init__(self) -> None:
        super().__init__()
        self._next_heartbeat = 0.0

    def run_once(self, now: float) -> None:
        healthy_since = self.thread.healthy_since if self.thread is not None else None
        if now >= self._next_heartbeat or healthy_since is None:
            services().job_heartbeat(running=runtime.running())
            self._next_heartbeat = now + settings.JOBS_HEARTBEAT_INTERVAL_S
        # After an outage, give every live worker time to heartbeat before judging leases.
        if healthy_since is not None and now - healthy_since > 2 * settings.JOBS_HEARTBEAT_INTERVAL_S:
            services().jobs_recover_orphans()
