"""A soft time limit: a catchable SoftTimeLimitExceeded some time before an actor's hard limit."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.logging import get_logger
from dramatiq.middleware import TimeLimit
from dramatiq.threading import raise_thread_exception

from apps.jobs.exceptions import SoftTimeLimitExceeded

if TYPE_CHECKING:
    from dramatiq.broker import MessageProxy


class SoftTimeLimit(dramatiq.Middleware):
    """Raises SoftTimeLimitExceeded in an actor some time before its hard time limit.

    The actor may catch it to clean up and stop (as with Celery's soft limit); if it does not, the
    attempt fails and is retried like any other error. Actors set `soft_time_limit` (ms); otherwise
    it is the hard limit minus a tenth of it (at least 1 s, at most 30 s).
    """

    def __init__(self, *, interval_ms: int = 100) -> None:
        self.logger = get_logger(__name__, type(self))
        self.interval_s = interval_ms / 1000
        self._deadlines: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._timer: threading.Thread | None = None

    @property
    def actor_options(self) -> set[str]:
        return {"soft_time_limit"}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        limit_ms = self._limit_ms(broker, message)
        if limit_ms is None:
            return
        with self._lock:
            self._deadlines[threading.get_ident()] = (time.monotonic() + limit_ms / 1000, message.message_id)
            if self._timer is None:
                self._timer = threading.Thread(target=self._watch, name="jobs-soft-time-limit", daemon=True)
                self._timer.start()

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, **kwargs: Any) -> None:
        with self._lock:
            self._deadlines.pop(threading.get_ident(), None)

    after_skip_message = after_process_message

    def _limit_ms(self, broker: dramatiq.Broker, message: MessageProxy) -> float | None:
        actor = broker.get_actor(message.actor_name)
        soft = message.options.get("soft_time_limit", actor.options.get("soft_time_limit"))
        if soft is not None:
            return soft
        hard = message.options.get("time_limit", actor.options.get("time_limit"))
        if hard is None:
            hard = next((m.time_limit for m in broker.middleware if isinstance(m, TimeLimit)), None)
        if hard is None or hard == float("inf"):
            return None
        return hard - min(30_000, max(1_000, hard / 10))

    def _watch(self) -> None:
        while True:
            time.sleep(self.interval_s)
            now = time.monotonic()
            with self._lock:
                due = [(tid, mid) for tid, (deadline, mid) in self._deadlines.items() if deadline <= now]
                for thread_id, message_id in due:
                    del self._deadlines[thread_id]
                    self.logger.warning("Message %s passed its soft time limit.", message_id)
                    raise_thread_exception(thread_id, SoftTimeLimitExceeded)
