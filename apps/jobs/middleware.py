"""Dramatiq middleware: broker hooks become ledger transitions; the soft time limit."""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import dramatiq
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django.utils import timezone
from dramatiq.logging import get_logger
from dramatiq.middleware import SkipMessage, TimeLimit
from dramatiq.threading import raise_thread_exception

from apps.jobs import runtime
from apps.jobs.exceptions import JobNotFound, JobQuarantined, SoftTimeLimitExceeded

if TYPE_CHECKING:
    from types import ModuleType

    from dramatiq.broker import MessageProxy

    from apps.jobs.models import Job


T = TypeVar("T")


def _services() -> ModuleType:
    # Middleware is built while Django loads its apps, before models can be imported; the services
    # (and the models behind them) are imported on first use instead.
    from apps.jobs import services

    return services


class LedgerMiddleware(dramatiq.Middleware):
    """Keeps the Job ledger: each broker hook calls one service, which guards the transition.

    Listed before Retries, so its after-hook sees Retries' decision: `message.failed` means the
    message went to the dead-letter queue, otherwise a retry was published with a delay. Listed
    before TimeLimit, so a time limit never interrupts a ledger write. While the database is
    down, ledger writes are retried (for up to JOBS_DB_OUTAGE_WAIT_S) with the message unacked:
    an outcome is never lost and a job never runs unrecorded.
    """

    def __init__(self) -> None:
        self.logger = get_logger(__name__, type(self))
        self._keeper: _Keeper | None = None

    @property
    def actor_options(self) -> set[str]:
        #: unique: True (by arguments) or a callable(*args, **kwargs) -> key; see services.job_submit.
        return {"unique"}

    # --- producer side ------------------------------------------------------------------------

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if runtime.is_publishing(message.message_id):
            return  # the ledger publishes its own jobs and records the outcome itself
        running = runtime.current()
        if running is not None and str(running.job_id) == message.message_id:
            running.retry_delay_ms = delay or 0  # Retries re-published the message being processed
            return
        try:
            _services().job_record_message(message=message)
        except Exception:
            # The worker records the job when the message arrives; nothing is lost.
            self.logger.exception("Could not record message %s in the ledger.", message.message_id)

    # --- worker side ----------------------------------------------------------------------------

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        runtime.end()
        runtime.claim(message.message_id)
        redelivered = bool(getattr(message, "redelivered", False))
        try:
            job = self._durably("starting a job", lambda: self._start(message, redelivered))
        except JobQuarantined:
            runtime.mark_skipped_duplicate(message.message_id)
            message.fail()  # to the dead-letter queue: it killed its worker on every attempt
            raise SkipMessage("The job's workers died on every attempt.") from None
        except DatabaseError:
            self._postpone(broker, message)
        if job is None:
            runtime.mark_skipped_duplicate(message.message_id)
            raise SkipMessage("Duplicate delivery of a job that must not run again.")
        runtime.begin(job.pk, job.attempts)
        # Attempts are counted in the ledger (a killed worker never reached Retries' counter), so
        # Retries decides from the ledger's numbers; attempts cut short by a shutdown do not count.
        message.options["retries"] = job.counted_attempts - 1
        message.options["max_retries"] = job.max_retries

    def _start(self, message: MessageProxy, redelivered: bool) -> Job | None:
        try:
            return _services().job_start(job_id=message.message_id, redelivered=redelivered)
        except JobNotFound:
            _services().job_record_message(message=message._message)
            return _services().job_start(job_id=message.message_id, redelivered=redelivered)

    def _postpone(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """The database stayed down: put the message back for later rather than run it unrecorded."""
        runtime.mark_skipped_duplicate(message.message_id)
        try:
            broker.enqueue(message._message.copy(), delay=POSTPONE_MS)
        except dramatiq.errors.DramatiqError:
            self.logger.critical(
                "Database and broker both unavailable; message %s dead-lettered.", message.message_id
            )
            message.fail()
        raise SkipMessage("The ledger is unavailable; the message was postponed.")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        running = runtime.current()
        if running is None or str(running.job_id) != message.message_id:
            runtime.end()  # the start itself failed; drop this thread's claim
            return
        try:
            self._durably(
                "recording an outcome", lambda: self._record_outcome(message, running, result, exception)
            )
        except DatabaseError:
            # Never ack an outcome the ledger could not record: dead-letter the message instead.
            self.logger.critical(
                "The outcome of job %s could not be recorded.", running.job_id, exc_info=True
            )
            message.fail()
        finally:
            runtime.end()

    def _record_outcome(
        self, message: MessageProxy, running: runtime.RunningJob, result: Any, exception: BaseException | None
    ) -> None:
        services = _services()
        if exception is None:
            services.job_succeed(job_id=running.job_id, attempt=running.attempt, result=_json_result(result))
            return
        formatted = "".join(traceback.format_exception(exception, limit=30))
        if message.failed:
            services.job_fail(
                job_id=running.job_id, attempt=running.attempt, error=exception, traceback=formatted
            )
            return
        published = running.retry_delay_ms is not None
        delay_ms = running.retry_delay_ms if published else (running.retry_held_ms or 0)
        services.job_retry_scheduled(
            job_id=running.job_id,
            attempt=running.attempt,
            error=exception,
            traceback=formatted,
            retry_at=timezone.now() + timedelta(milliseconds=delay_ms),
            published=published,
        )

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        runtime.end()
        if runtime.pop_skipped_duplicate(message.message_id):
            return
        services = _services()
        job = services.job_record_message(message=message._message)
        if message.failed:
            services.job_fail_undelivered(
                job_id=job.pk, reason="Dead-lettered before it ran: the message outlived its max_age."
            )
        else:
            services.job_skip(job_id=job.pk, reason="Outdated schedule tick")

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.actor_name in broker.actors:
            return  # an ordinary failure, recorded by after_process_message
        try:
            _services().job_record_dead_letter(
                job_id=message.message_id,
                actor_name=message.actor_name,
                queue_name=dramatiq.common.q_name(message.queue_name),
                reason=f"No actor named {message.actor_name!r} in this worker: dead-lettered.",
            )
        except Exception:
            self.logger.exception("Could not record dead-lettered message %s.", message.message_id)

    # --- worker process lifecycle ---------------------------------------------------------------

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._keeper = _Keeper(self.logger)
        self._keeper.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Jobs still running now were abandoned at the shutdown timeout: RabbitMQ gets their
        # messages back when this process's connections close.
        for running in runtime.running_jobs():
            try:
                _services().job_interrupt(job_id=running.job_id, attempt=running.attempt)
            except Exception:
                self.logger.exception("Could not record the interruption of job %s.", running.job_id)
        if self._keeper is not None:
            self._keeper.stop()

    def _durably(self, what: str, call: Callable[[], T]) -> T:
        """Run a ledger write, retrying while the database is unreachable."""
        deadline = time.monotonic() + settings.JOBS_DB_OUTAGE_WAIT_S
        pause = 0.5
        while True:
            try:
                return call()
            except (OperationalError, InterfaceError) as exc:
                connections.close_all()  # this thread's connections; the next query reconnects
                if time.monotonic() + pause > deadline:
                    raise
                self.logger.warning(
                    "Database unavailable while %s (%s); retrying in %.1f s.", what, exc, pause
                )
                time.sleep(pause)
                pause = min(pause * 2, 5.0)


#: How long (ms) a message waits before another try when the ledger stayed unreachable.
POSTPONE_MS = 60_000


class _Keeper(threading.Thread):
    """Per worker process: heartbeats for its running jobs, the relay, and the orphan sweep."""

    def __init__(self, logger: Any) -> None:
        super().__init__(name="jobs-keeper", daemon=True)
        self.logger = logger
        self._stopped = threading.Event()
        self._next_heartbeat = 0.0
        #: Since when the database has answered without a break (None while it does not).
        self._healthy_since: float | None = None

    def run(self) -> None:
        services = _services()
        while not self._stopped.wait(settings.JOBS_KEEPER_INTERVAL_S):
            now = time.monotonic()
            try:
                if now >= self._next_heartbeat:
                    services.job_heartbeat(job_ids=runtime.running_job_ids())
                    self._next_heartbeat = now + settings.JOBS_HEARTBEAT_INTERVAL_S
                self._healthy_since = self._healthy_since or now
                services.jobs_relay_due()
                # After an outage, give every live worker time to heartbeat before judging leases.
                if now - self._healthy_since > 2 * settings.JOBS_HEARTBEAT_INTERVAL_S:
                    services.jobs_recover_orphans()
            except DatabaseError as exc:
                self._healthy_since = None
                self._next_heartbeat = 0.0
                self.logger.warning("Keeper: database unavailable (%s); retrying.", exc)
                connections.close_all()
            except Exception:
                self.logger.exception("Keeper run failed; retrying.")
        connections.close_all()

    def stop(self) -> None:
        self._stopped.set()


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


def _json_result(result: Any) -> Any:
    """The actor's return value as stored on the job: JSON as is, anything else as its repr."""
    if result is None:
        return None
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError):
        return {"repr": repr(result)[:1000]}
    return result
