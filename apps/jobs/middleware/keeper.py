"""A daemon thread that repeats one database task every few seconds, for the life of a worker process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connections


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
