"""Heartbeats for the jobs a worker process runs, and the sweep that recovers jobs whose worker is gone."""

from __future__ import annotations

from typing import Any

import dramatiq
from django.conf import settings
from dramatiq.logging import get_logger

from apps.jobs import runtime
from apps.jobs.middleware.keeper import Keeper


def _services() -> Any:
    # Middleware is built while Django loads its apps, before models can be imported.
    from apps.jobs import services

    return services


class Liveness(dramatiq.Middleware):
    """Keeps the lease of every attempt this process runs, and recovers orphans of dead workers.

    Its own thread, with its own database connection, and nothing else on it: a publish blocked by
    RabbitMQ (a memory alarm, a stalled network) must never stop the heartbeats, or another host
    would take over jobs that are still running here.
    """

    def __init__(self) -> None:
        self.logger = get_logger(__name__, type(self))
        self._thread: Keeper | None = None
        self._next_heartbeat = 0.0

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._thread = Keeper("jobs-liveness", self._beat, settings.JOBS_KEEPER_INTERVAL_S, self.logger)
        self._thread.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._thread is not None:
            self._thread.stop()

    def _beat(self, now: float) -> None:
        services = _services()
        assert self._thread is not None
        if now >= self._next_heartbeat or self._thread.healthy_since is None:
            services.job_heartbeat(running=runtime.running())
            self._next_heartbeat = now + settings.JOBS_HEARTBEAT_INTERVAL_S
        # After an outage, give every live worker time to heartbeat before judging leases.
        healthy_since = self._thread.healthy_since
        if healthy_since is not None and now - healthy_since > 2 * settings.JOBS_HEARTBEAT_INTERVAL_S:
            services.jobs_recover_orphans()
