"""The outbox relay's thread: publishes jobs whose message RabbitMQ does not have (services.relay)."""

from __future__ import annotations

from apps.jobs.middleware.keeper import KeeperMiddleware, services


class Relay(KeeperMiddleware):
    """Runs the relay in every worker process, on a thread of its own (a publish may block)."""

    thread_name = "jobs-relay"

    def run_once(self, now: float) -> None:
        services().jobs_relay_due()
