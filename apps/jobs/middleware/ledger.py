"""The job ledger's middleware: every broker hook becomes one guarded transition in apps.jobs.services."""

from __future__ import annotations

import functools
import json
import threading
import time
import traceback
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import dramatiq
from django.conf import settings
from django.db import DatabaseError, DataError
from django.utils import timezone
from dramatiq.logging import get_logger
from dramatiq.middleware import Interrupt, SkipMessage
from dramatiq.middleware.shutdown import Shutdown
from dramatiq.threading import raise_thread_exception

from apps.jobs import db, runtime
from apps.jobs.exceptions import JobNotFound, JobQuarantined, ResultNotStorable, SoftTimeLimitExceeded
from apps.jobs.middleware.keeper import services as _services

if TYPE_CHECKING:
    from dramatiq.broker import MessageProxy

#: How long (ms) a message waits before another try when the ledger stayed unreachable.
POSTPONE_MS = 60_000
#: Seconds a stopping worker, at its shutdown timeout, waits for abandoned jobs to stop at a safe
#: point, and again after interrupting them wherever they were, before recording them itself.
INTERRUPT_GRACE_S = 1.0


class LedgerMiddleware(dramatiq.Middleware):
    """Keeps the Job ledger: the actor runs only once the ledger started its attempt.

    Listed before TimeLimit, so a time limit is armed only after the start is recorded, and before
    Retries, so its after-hook sees Retries' decision: `message.failed` means dead-lettered;
    otherwise Retries asked for a retry, which the broker hands to this delivery instead of
    publishing it (runtime.Delivery.retry_delay_ms). The retry is published here once the ledger
    has recorded it, so a retry can never arrive while the ledger still says "running".
    While the database is down, ledger writes are retried (up to JOBS_DB_OUTAGE_WAIT_S) with the
    message unacknowledged: a job never runs unrecorded and an outcome is never acknowledged
    unrecorded.
    """

    def __init__(self) -> None:
        self.logger = get_logger(__name__, type(self))
        #: Set when this worker process starts shutting down: it starts no new job from then on.
        self._stopping = False
        self._shutdown_lock = threading.Lock()

    @property
    def actor_options(self) -> set[str]:
        #: unique: True (by arguments) or a callable(*args, **kwargs) -> key; see services.job_submit.
        return {"unique"}

    # --- producer side ----------------------------------------------------------------------------

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if runtime.is_ledger_publish(message.message_id):
            return  # the ledger publishes its own jobs and records the outcome itself
        try:
            db.with_reconnect(lambda: _services().job_record_message(message=message))
        except Exception:
            # The worker records the job when the message arrives; nothing is lost.
            self.logger.exception("Could not record message %s in the ledger.", message.message_id)

    # --- worker side: start -----------------------------------------------------------------------

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        delivery = runtime.delivery_open(message)
        if self._stopping:
            # A thread of a stopping worker can still take a message off its queue; started now,
            # the job would only be abandoned at the shutdown timeout. Hand it back instead.
            self._hand_back(broker, delivery)
        try:
            job = db.durably("starting a job", lambda: self._start(message))
        except JobQuarantined:
            self._skip(delivery, "The job's workers died on every attempt.", dead_letter=True)
        except db.CONNECTION_ERRORS:
            self._postpone(broker, delivery)
        except Exception as exc:
            # Bad data, a message id that is no job id, a bug: Dramatiq would log this and run the
            # actor anyway. The ledger did not start it, so it must not run.
            self.logger.exception("Job %s could not be started; dead-lettered.", message.message_id)
            self._record_refused(message, exc)
            self._skip(delivery, f"The job could not be started: {exc}", dead_letter=True)
        if job is None:
            self._skip(delivery, "Duplicate delivery of a job that must not run now.")
        runtime.delivery_started(delivery, job.attempts)
        # Attempts are counted in the ledger (a killed worker never reached Retries' counter), so
        # Retries decides from the ledger's numbers; attempts cut short by a shutdown do not count.
        message.options["retries"] = job.counted_attempts - 1
        message.options["max_retries"] = job.max_retries

    def _start(self, message: MessageProxy) -> Any:
        services = _services()
        redelivered = bool(getattr(message, "redelivered", False))
        try:
            return services.job_start(job_id=message.message_id, redelivered=redelivered)
        except JobNotFound:
            services.job_record_message(message=message._message)
            return services.job_start(job_id=message.message_id, redelivered=redelivered)

    def _skip(self, delivery: runtime.Delivery, reason: str, *, dead_letter: bool = False) -> NoReturn:
        delivery.skipped_by_ledger = True
        if dead_letter:
            delivery.message.fail()
        raise SkipMessage(reason)

    def _postpone(self, broker: dramatiq.Broker, delivery: runtime.Delivery) -> NoReturn:
        """The database stayed down: put the message back for later rather than run it unrecorded."""
        if not self._publish_copy(broker, delivery, delay=POSTPONE_MS):
            self.logger.critical(
                "Database and broker both unavailable; message %s dead-lettered.", delivery.job_id
            )
            self._skip(delivery, "The ledger and the broker are unavailable.", dead_letter=True)
        self._skip(delivery, "The ledger is unavailable; the message was postponed.")

    def _hand_back(self, broker: dramatiq.Broker, delivery: runtime.Delivery) -> None:
        """Publish a copy of the message for another worker, then drop this delivery (if that worked)."""
        if self._publish_copy(broker, delivery):
            self._skip(delivery, "The worker is shutting down; the message was handed back.")
        # else RabbitMQ is unreachable too: run it here rather than risk losing it

    def _publish_copy(
        self, broker: dramatiq.Broker, delivery: runtime.Delivery, *, delay: int | None = None
    ) -> bool:
        """Publish a copy of the delivered message as the ledger's own publish; False if RabbitMQ refused."""
        message = delivery.message
        try:
            with runtime.ledger_publish(message.message_id):
                broker.enqueue(message._message.copy(), delay=delay)
        except dramatiq.errors.DramatiqError:
            return False
        return True

    def _record_refused(self, message: MessageProxy, error: Exception) -> None:
        """Show a message the ledger could not start as a failed job, where the database allows."""
        reason = f"The job could not be recorded ({type(error).__name__}: {error}); dead-lettered."
        payload = f"args={message.args!r} kwargs={message.kwargs!r}"[:500]
        for job_id in (message.message_id, None):
            try:
                _services().job_record_dead_letter(
                    job_id=job_id,
                    actor_name=message.actor_name,
                    queue_name=dramatiq.common.q_name(message.queue_name),
                    reason=reason if job_id else f"{reason} Message id: {message.message_id!r}.",
                    payload=payload,
                )
                return
            except Exception:
                self.logger.debug("Recording refused message %s failed.", message.message_id, exc_info=True)
        self.logger.error("Message %s could not be recorded in the ledger at all.", message.message_id)

    # --- worker side: outcome ---------------------------------------------------------------------

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        delivery = runtime.current_for(message)
        if delivery is None:
            return
        try:
            if delivery.attempt is not None:
                delivery.actor_done = True
                self._record_outcome(delivery, result, exception)
        finally:
            runtime.delivery_close()

    def _record_outcome(
        self, delivery: runtime.Delivery, result: Any, exception: BaseException | None
    ) -> None:
        message = delivery.message
        if exception is not None and (
            delivery.interrupted or (self._stopping and isinstance(exception, Shutdown))
        ):
            # Stopped by this worker's shutdown: the attempt does not count, another worker runs it.
            self._interrupt(delivery, publish=True)
            return
        try:
            if exception is None:
                try:
                    value = _json_result(result)
                    db.durably("recording a success", lambda: self._succeed(delivery, value))
                    return
                except DataError as exc:  # the database refuses the result itself (e.g. a NUL)
                    exception = ResultNotStorable(f"The job's result cannot be stored: {exc}".strip())
                    message.fail()
            if message.failed:
                db.durably("recording a failure", lambda: self._fail(delivery, exception))
            else:
                db.durably("recording a retry", lambda: self._retry(delivery, exception))
        except db.CONNECTION_ERRORS:
            # Never ack an outcome the ledger could not record: dead-letter the message instead.
            self.logger.critical(
                "The outcome of job %s could not be recorded.", delivery.job_id, exc_info=True
            )
            message.fail()
        except Exception as exc:
            self.logger.critical("Recording the outcome of job %s failed.", delivery.job_id, exc_info=True)
            message.fail()
            failure = exc
            try:
                db.durably("recording a failure", lambda: self._fail(delivery, failure), wait_s=0)
            except Exception:
                self.logger.exception("Job %s stays running until its lease expires.", delivery.job_id)

    def _succeed(self, delivery: runtime.Delivery, value: Any) -> None:
        _services().job_succeed(job_id=delivery.job_id, attempt=delivery.attempt, result=value)

    def _fail(self, delivery: runtime.Delivery, exception: BaseException) -> None:
        exception = _reported(exception)
        _services().job_fail(
            job_id=delivery.job_id, attempt=delivery.attempt, error=exception, traceback=_traceback(exception)
        )

    def _retry(self, delivery: runtime.Delivery, exception: BaseException) -> None:
        services = _services()
        exception = _reported(exception)
        delay_ms = delivery.retry_delay_ms or 0
        job = services.job_retry_scheduled(
            job_id=delivery.job_id,
            attempt=delivery.attempt,
            error=exception,
            traceback=_traceback(exception),
            retry_at=timezone.now() + timedelta(milliseconds=delay_ms),
        )
        if job is not None and delay_ms <= settings.JOBS_MAX_BROKER_DELAY_MS:
            # Recorded and committed: now publish the retry (the relay does it if this fails).
            services.job_relay(job_id=job.pk, relay_after=job.relay_after)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        delivery = runtime.current_for(message)
        runtime.delivery_close()
        if delivery is not None and delivery.skipped_by_ledger:
            return
        # Skipped before the ledger saw it: AgeLimit dead-letters a message past its max_age.
        services = _services()
        try:
            job = db.with_reconnect(lambda: services.job_record_message(message=message._message))
            if message.failed:
                services.job_fail_undelivered(
                    job_id=job.pk, reason="Dead-lettered before it ran: the message outlived its max_age."
                )
            else:
                services.job_skip(job_id=job.pk, reason="Skipped before it started.")
        except Exception:
            self.logger.exception("Could not record the skip of message %s.", message.message_id)

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.actor_name in broker.actors:
            return  # an ordinary failure, recorded by after_process_message
        # Runs on a consumer thread, which no request cycle tidies: reconnect after a restart.
        try:
            db.with_reconnect(
                lambda: _services().job_record_dead_letter(
                    job_id=message.message_id,
                    actor_name=message.actor_name,
                    queue_name=dramatiq.common.q_name(message.queue_name),
                    reason=f"No actor named {message.actor_name!r} in this worker: dead-lettered.",
                )
            )
        except Exception:
            self.logger.exception("Could not record dead-lettered message %s.", message.message_id)

    # --- worker process lifecycle -----------------------------------------------------------------

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopping = False

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopping = True

    def before_consumer_thread_shutdown(self, broker: dramatiq.Broker, thread: Any) -> None:
        # Worker.stop() joins the worker threads (up to the shutdown timeout), then stops the
        # consumers, then closes their connections, which hands the unacknowledged messages back to
        # RabbitMQ. Jobs still running now are abandoned: record that before the messages go back,
        # or another worker would find them "running under a live process" and drop the copy.
        self._stop_abandoned()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop_abandoned()  # in case no consumer thread ran; a second call finds nothing to do

    def _stop_abandoned(self) -> None:
        """Stop the jobs still running at the shutdown timeout, each recorded as interrupted.

        Each thread is interrupted and records the interruption itself, in its after-hook: the
        thread that did the work is the one that says whether it finished, so a job completing in
        the same instant is recorded as succeeded, never also run again elsewhere. A thread that
        does not get there in time (stuck in a blocking call) is recorded from here; its late
        outcome is fenced off.
        """
        with self._shutdown_lock:
            abandoned = [d for d in runtime.running_deliveries() if not d.actor_done and not d.interrupted]
            for delivery in abandoned:
                delivery.interrupted = True  # first, a request to stop at a safe point (progress)
                # This attempt does not count: Retries must not dead-letter it as the last one.
                options = delivery.message.options
                options["max_retries"] = options.get("retries", 0) + 1
            for delivery in _still_running(abandoned, INTERRUPT_GRACE_S):
                raise_thread_exception(delivery.thread_id, Shutdown)  # then wherever it is
            for delivery in _still_running(abandoned, INTERRUPT_GRACE_S):
                self._interrupt(delivery)  # stuck in a blocking call: recorded from here

    def _interrupt(self, delivery: runtime.Delivery, *, publish: bool = False) -> None:
        services = _services()
        try:
            job = db.with_reconnect(
                functools.partial(
                    services.job_interrupt,
                    job_id=delivery.job_id,
                    attempt=delivery.started_attempt,
                    relay_now=publish,
                )
            )
            if job is not None and publish:
                services.job_relay(job_id=job.pk, relay_after=job.relay_after)
        except Exception:
            self.logger.exception("Could not record the interruption of job %s.", delivery.job_id)


def _still_running(deliveries: list[runtime.Delivery], wait_s: float) -> list[runtime.Delivery]:
    """Those of `deliveries` whose actor has not returned after waiting up to `wait_s` for all."""
    deadline = time.monotonic() + wait_s
    while True:
        running = [d for d in deliveries if not d.actor_done and d in runtime.running_deliveries()]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.02)


def _reported(exception: BaseException) -> BaseException:
    """The error to record for an attempt: a time limit or shutdown, not the database error it caused.

    An interrupt landing in the COMMIT of the actor's transaction makes Django's atomic block fail
    in turn ("can't change 'autocommit' now"); the interrupt is the cause operators need to see.
    """
    if isinstance(exception, DatabaseError):
        cause = exception.__cause__ or exception.__context__
        for _ in range(5):
            if cause is None:
                break
            if isinstance(cause, Interrupt | SoftTimeLimitExceeded):
                return cause
            cause = cause.__cause__ or cause.__context__
    return exception


def _traceback(exception: BaseException) -> str:
    return "".join(traceback.format_exception(exception, limit=30))


def _json_result(result: Any) -> Any:
    """The actor's return value as stored on the job: JSON as is, anything else as its repr."""
    if result is None:
        return None
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError):
        return {"repr": repr(result)[:1000]}
    return result
