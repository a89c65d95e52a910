"""Middleware that keeps one daemon thread per worker process, repeating a database task every few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from django.conf import settings
from django.db import DatabaseError, connections
from dramatiq.logging import get_logger


class Keeper(threading.Thread):
    """Runs `task` every `interval_s` until stopped; a database outage is logged and waited out."""

    def __init__(self, name: str, task: Callable[[float], None], interval_s: float, logger: Any) -> None:
        super().__init__(name=name, daemon=True)
        self.task = task
        self.interval_s = interval_s
        self.logger = logger
        self._stopped = threading.Event()
        #: Since when (time.monotonic()) the database has answered without a break; None while not.
        self.healthy_since: float | None = None

    def run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.task(time.monotonic())
                self.healthy_since = self.healthy_since or time.monotonic()
            except DatabaseError as exc:
                self.healthy_since = None
                self.logger.warning("%s: database unavailable (%s); retrying.", self.name, exc)
                connections.close_all()  # this thread's: the next run reconnects
            except Exception:
                self.logger.exception("%s failed; retrying.", self.name)
        connections.close_all()

    def stop(self) -> None:
        self._stopped.set()


class KeeperMiddleware(dramatiq.Middleware):
    """Starts `run_once` on a thread of its own in each worker process, every JOBS_KEEPER_INTERVAL_S."""

    #: The thread's name, as it shows in logs and thread dumps.
    thread_name = "jobs-keeper"

    def __init__(self) -> None:
        self.logger = get_logger(__name__, type(self))
        self.thread: Keeper | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.thread = Keeper(self.thread_name, self.run_once, settings.JOBS_KEEPER_INTERVAL_S, self.logger)
        self.thread.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.thread is not None:
            self.thread.stop()

    def run_once(self, now: float) -> None:
        """One round of the thread's work; `now` is time.monotonic()."""
        raise NotImplementedError


def services() -> Any:
    """apps.jobs.services, imported on first use: middleware is built while Django loads its apps,
    before models can be imported."""
    from apps.jobs import services

    return services
