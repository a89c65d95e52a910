"""The outbox relay's thread: publishes jobs whose message RabbitMQ does not have (services.relay)."""

from __future__ import annotations

import dramatiq
from django.conf import settings
from dramatiq.logging import get_logger

from apps.jobs.middleware.keeper import Keeper


class Relay(dramatiq.Middleware):
    """Runs the relay in every worker process, on a thread of its own (a publish may block)."""

    def __init__(self) -> None:
        self.logger = get_logger(__name__, type(self))
        self._thread: Keeper | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._thread = Keeper("jobs-relay", self._relay, settings.JOBS_KEEPER_INTERVAL_S, self.logger)
        self._thread.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self._thread is not None:
            self._thread.stop()

    def _relay(self, now: float) -> None:
        from apps.jobs import services  # models are not importable when middleware is built

        services.jobs_relay_due()
