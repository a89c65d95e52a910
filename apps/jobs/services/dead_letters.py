"""Dead letters: the messages RabbitMQ holds in each queue's .XQ, read, run again or dropped by operators.

Every function works on a short-lived connection of its own (as apps.jobs.queues does for the web
process) and takes messages with basic_get and manual acknowledgement, so that nothing is lost if
the request, the connection or RabbitMQ dies half-way: a message is only ever acknowledged (removed)
after what replaces it (a retry job in the ledger) is committed; everything else goes back.

RabbitMQ dead-letters a message's body as it was delivered. The ledger publishes a job's message
from its row (services.job_message), so the body rarely carries Dramatiq's Retries bookkeeping
(options "retries" and "traceback" are set on the worker's copy only); where the body lacks them,
the ledger's job fills in the error and the attempts.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db import transaction

from apps.jobs.encoding import MESSAGE_FIELDS
from apps.jobs.exceptions import BrokerUnavailable, JobsError, UnknownQueue
from apps.jobs.models import Job
from apps.jobs.queues import broker_connection, message_counts, queue_names
from apps.jobs.services import operations

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from pika.adapters.blocking_connection import BlockingChannel

logger = logging.getLogger(__name__)

#: Characters of an undecodable body shown on the page (the rest stays in RabbitMQ).
RAW_BODY_CHARS = 2000
#: Messages one requeue-all takes at most: each is a ledger transaction, and a web request is waiting.
REQUEUE_ALL_LIMIT = 1000


class DeadLetterNotFound(JobsError):
    """No message with this id is in the dead-letter queue (requeued, purged or expired meanwhile)."""


class DeadLetterNotRequeued(JobsError):
    """The dead letter was not requeued; it stays in the dead-letter queue."""


@dataclass(frozen=True)
class DeadLetter:
    """One message of a dead-letter queue, as decoded for the console (nothing here is trusted HTML)."""

    queue_name: str
    #: The Dramatiq message id (the Job's id); "" for a body that is not a Dramatiq message.
    message_id: str
    actor_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    #: When the message was first sent (Dramatiq's message_timestamp).
    enqueued_at: datetime | None
    #: When RabbitMQ dead-lettered it (its x-death header, in whole seconds).
    dead_lettered_at: datetime | None
    #: RabbitMQ's reason: "rejected" (a worker failed it), "expired", "maxlen", ...
    reason: str
    #: Dramatiq's Retries count if the body carries it (see the module's docstring).
    retries: int | None
    #: The last error (one line) and its traceback: from the body if it carries them, else the ledger's.
    error: str
    traceback: str
    #: The body as text when it is not a Dramatiq message; None for a decoded one.
    raw: str | None = None
    #: The ledger's job with this id: its status and counted attempts, None if the ledger has none.
    job_status: str | None = None
    job_attempts: int | None = None

    @property
    def decoded(self) -> bool:
        return self.raw is None

    @property
    def job_exists(self) -> bool:
        return self.job_status is not None


@dataclass
class RequeueReport:
    """What one requeue-all did: the messages retried, those left in .XQ and why."""

    queue_name: str
    #: (message id, the new retry job's id) for each message requeued and removed from .XQ.
    requeued: list[tuple[str, str]] = field(default_factory=list)
    #: (message id, or "" for an undecodable body; the reason) for each message left in .XQ.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Messages not looked at (past the limit, or arrived meanwhile) still in .XQ.
    remaining: int = 0


def dead_letters_peek(*, queue: str, limit: int = 100) -> list[DeadLetter]:
    """The first `limit` messages of `queue`.XQ, oldest first, left in the queue exactly as they were.

    Each message is taken with basic_get and manual acknowledgement on one channel and all are
    handed back together (nack with requeue), which RabbitMQ puts back at their old places, in order;
    a connection lost half-way hands them back too. A body that is not a Dramatiq message is shown
    raw. Messages another client holds unacknowledged at the moment (a concurrent peek or requeue)
    are not seen. Raises UnknownQueue, BrokerUnavailable.
    """
    _check_queue(queue)
    letters: list[DeadLetter] = []
    with _channel() as channel:
        last_tag = None
        for tag, letter in _take(channel, queue, limit):
            letters.append(letter)
            last_tag = tag
        if last_tag is not None:
            channel.basic_nack(delivery_tag=last_tag, multiple=True, requeue=True)
    return _with_ledger(letters)


def dead_letter_counts() -> dict[str, int]:
    """Messages in each queue's .XQ, by queue name (0 for one RabbitMQ does not have yet).

    Read with passive declares, which never create a queue. Raises BrokerUnavailable.
    """
    names = queue_names()
    counts = message_counts([_xq(name) for name in names])
    return {name: (counts[_xq(name)] or (0, 0))[0] for name in names}


def dead_letter_requeue(*, queue: str, message_id: str, requested_by: AbstractBaseUser | None = None) -> Job:
    """Run the job of one dead letter again (a new job linked by retry_of) and remove the message.

    The message is taken off `queue`.XQ (the messages passed while looking for it go back, in
    order), then operations.job_retry records the retry job, with a fresh retry budget, and the
    message is acknowledged only once that transaction is committed: a crash in between leaves the
    message in .XQ with the retry recorded, and a second requeue of it is refused as "already
    retried" instead of running the job twice. Returns the retry job, published after the commit.

    Raises DeadLetterNotFound, or DeadLetterNotRequeued (the message stays in .XQ) when the ledger has
    no such job, the job cannot be retried (not failed, already being retried, already retried by
    another job, an actor no longer registered), or for a body that is not a Dramatiq message.
    Also UnknownQueue, BrokerUnavailable. The requeue is recorded in the jobs' admin history.
    """
    _check_queue(queue)
    with _channel() as channel:
        found = None
        passed: list[int] = []
        for tag, letter in _take(channel, queue, None):
            if letter.message_id == message_id:
                found = (tag, letter)
                break
            passed.append(tag)
        # Hand back what was passed at once: the rest of .XQ stays as it was while the ledger works.
        for tag in passed:
            channel.basic_nack(delivery_tag=tag, requeue=True)
        if found is None:
            raise DeadLetterNotFound(
                f"No message {message_id} in {_xq(queue)}: it was requeued, purged or expired meanwhile.",
                message_id=message_id,
            )
        tag, letter = found
        try:
            retry = _retry(letter, requested_by)
        except DeadLetterNotRequeued:
            channel.basic_nack(delivery_tag=tag, requeue=True)
            raise
        channel.basic_ack(delivery_tag=tag)
    _log_requeued(letter, retry, requested_by)
    return retry


def dead_letters_requeue_all(
    *, queue: str, requested_by: AbstractBaseUser | None = None, limit: int = REQUEUE_ALL_LIMIT
) -> RequeueReport:
    """Requeue every dead letter of `queue`.XQ (up to `limit`) as dead_letter_requeue does one.

    Each message is acknowledged right after its retry job is committed; one that cannot be
    requeued (see dead_letter_requeue) is held until the end and then handed back in its old place,
    so it is neither lost nor taken twice in this run. A second dead letter of a job already requeued
    in this run is skipped ("already being retried"): a job never runs twice. Raises UnknownQueue,
    BrokerUnavailable (the messages not yet requeued stay in .XQ).
    """
    _check_queue(queue)
    report = RequeueReport(queue_name=queue)
    with _channel() as channel:
        held: list[int] = []
        for tag, letter in _take(channel, queue, limit):
            try:
                retry = _retry(letter, requested_by)
            except DeadLetterNotRequeued as exc:
                held.append(tag)
                report.skipped.append((letter.message_id, exc.message))
                continue
            channel.basic_ack(delivery_tag=tag)
            report.requeued.append((letter.message_id, str(retry.pk)))
            _log_requeued(letter, retry, requested_by)
        # Counted before the held ones go back: taken, unacknowledged messages are not "ready", so this
        # is exactly what was not looked at (a count read after the nack may not see them back yet).
        report.remaining = _ready(channel, queue)
        if held:
            channel.basic_nack(delivery_tag=held[-1], multiple=True, requeue=True)
    return report


def dead_letters_purge(*, queue: str, requested_by: AbstractBaseUser | None = None) -> int:
    """Drop every message of `queue`.XQ; returns how many. The ledger's jobs stay failed as they are.

    The messages are taken and acknowledged together rather than with queue_purge, which cannot say
    which messages it dropped: each job whose dead letter went gets a line in its admin history.
    Messages that arrive meanwhile are kept. Raises UnknownQueue, BrokerUnavailable.
    """
    _check_queue(queue)
    ids: list[str] = []
    with _channel() as channel:
        # Only what is there now: dead letters arriving while this runs are not purged unseen.
        ready = _ready(channel, queue)
        last_tag = None
        for tag, letter in _take(channel, queue, ready):
            ids.append(letter.message_id)
            last_tag = tag
        if last_tag is not None:
            channel.basic_ack(delivery_tag=last_tag, multiple=True)
    logger.warning(
        "Purged %d dead letters from %s.",
        len(ids),
        _xq(queue),
        extra={
            "action": "dead_letters_purged",
            "queue": queue,
            "count": len(ids),
            "operator": getattr(requested_by, "username", None),
        },
    )
    if requested_by is not None and requested_by.pk is not None and ids:
        jobs = Job.objects.filter(pk__in=[job_id for job_id in ids if _is_uuid(job_id)])
        LogEntry.objects.log_actions(
            requested_by.pk,
            jobs,
            CHANGE,
            f"Purged its dead letter from {_xq(queue)} ({len(ids)} purged in all); the job stays failed.",
        )
    return len(ids)


# --- helpers ----------------------------------------------------------------------------------------


def _xq(queue: str) -> str:
    return f"{queue}.XQ"


def _check_queue(queue: str) -> None:
    if queue not in queue_names():
        raise UnknownQueue(f"No queue is declared under the name {queue!r}.", queue=queue)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _ready(channel: BlockingChannel, queue: str) -> int:
    """Messages ready in `queue`.XQ (0 if RabbitMQ has no such queue yet; the channel is closed then)."""
    try:
        return int(channel.queue_declare(queue=_xq(queue), passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return 0
        raise


@contextmanager
def _channel() -> Iterator[BlockingChannel]:
    """A channel on a connection of its own, closed afterwards, which hands back all unacked messages.

    Any AMQP failure inside becomes BrokerUnavailable; the messages taken and not acknowledged by
    then go back to their queue when RabbitMQ sees the connection close.
    """
    connection = broker_connection()
    try:
        yield connection.channel()
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailable(f"RabbitMQ failed while handling dead letters: {exc!r}") from exc
    finally:
        if connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                logger.warning("Closing the dead-letter connection failed.", exc_info=True)


def _take(channel: BlockingChannel, queue: str, limit: int | None) -> Iterator[tuple[int, DeadLetter]]:
    """Take up to `limit` messages (all if None) of `queue`.XQ with manual ack: (delivery tag, letter).

    They stay unacknowledged, so each basic_get returns the next one; the caller acks or nacks them.
    A missing .XQ (no worker declared the queue yet) is an empty one.
    """
    taken = 0
    while limit is None or taken < limit:
        try:
            method, properties, body = channel.basic_get(queue=_xq(queue), auto_ack=False)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return
            raise
        if method is None:
            return
        taken += 1
        yield method.delivery_tag, _decode(queue, properties, body or b"")


def _decode(queue: str, properties: pika.BasicProperties | None, body: bytes) -> DeadLetter:
    """A DeadLetter from a message's body (Dramatiq's JSON) and properties (RabbitMQ's x-death)."""
    dead_lettered_at, reason = _death(properties)
    try:
        fields = json.loads(body)
        if not isinstance(fields, dict) or not MESSAGE_FIELDS <= set(fields):
            raise ValueError("not a Dramatiq message")
        options = fields["options"] if isinstance(fields["options"], dict) else {}
        traceback = str(options.get("traceback") or "")
        return DeadLetter(
            queue_name=queue,
            message_id=str(fields["message_id"]),
            actor_name=str(fields["actor_name"]),
            args=list(fields["args"]) if isinstance(fields["args"], list) else [fields["args"]],
            kwargs=fields["kwargs"] if isinstance(fields["kwargs"], dict) else {},
            options=options,
            enqueued_at=_from_ms(fields.get("message_timestamp")),
            dead_lettered_at=dead_lettered_at,
            reason=reason,
            retries=options["retries"] if isinstance(options.get("retries"), int) else None,
            error=_last_line(traceback),
            traceback=traceback,
        )
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        return DeadLetter(
            queue_name=queue,
            message_id="",
            actor_name="",
            args=[],
            kwargs={},
            options={},
            enqueued_at=None,
            dead_lettered_at=dead_lettered_at,
            reason=reason,
            retries=None,
            error="Not a Dramatiq message: no worker can run it.",
            traceback="",
            raw=body.decode("utf-8", errors="replace")[:RAW_BODY_CHARS],
        )


def _death(properties: pika.BasicProperties | None) -> tuple[datetime | None, str]:
    """When and why RabbitMQ dead-lettered the message: its newest x-death entry."""
    headers = (properties.headers if properties is not None else None) or {}
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], dict):
        return None, ""
    death = deaths[0]
    at = death.get("time")
    reason = death.get("reason", "")
    return (at if isinstance(at, datetime) else None), (
        reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    )


def _from_ms(value: Any) -> datetime | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _with_ledger(letters: list[DeadLetter]) -> list[DeadLetter]:
    """The letters with their jobs' status, attempts and (where the body has none) error, in one query."""
    ids = {letter.message_id for letter in letters if _is_uuid(letter.message_id)}
    jobs = {
        str(job.pk): job
        for job in Job.objects.filter(pk__in=ids).only(
            "id", "status", "attempts", "interruptions", "last_error", "last_traceback"
        )
    }
    completed = []
    for letter in letters:
        job = jobs.get(letter.message_id)
        if job is None:
            completed.append(letter)
            continue
        completed.append(
            replace(
                letter,
                job_status=job.status,
                job_attempts=job.counted_attempts,
                error=letter.error or job.last_error,
                traceback=letter.traceback or job.last_traceback,
            )
        )
    return completed


def _retry(letter: DeadLetter, requested_by: AbstractBaseUser | None) -> Job:
    """Record the retry of a dead letter's job, committed on return; DeadLetterNotRequeued if refused.

    durable=True makes sure this is the outermost transaction: the caller acknowledges the message
    right after, which must never happen before the retry is really committed.
    """
    if not letter.decoded:
        raise DeadLetterNotRequeued("Not a Dramatiq message: no worker could run it; purge it instead.")
    job_id = letter.message_id
    try:
        with transaction.atomic(durable=True):
            job = Job.objects.select_for_update().filter(pk=job_id).first() if _is_uuid(job_id) else None
            if job is None:
                raise DeadLetterNotRequeued(
                    f"The ledger has no job {job_id}, so it cannot be retried; purge the message instead.",
                    message_id=job_id,
                )
            # A finished retry means the dead letter is out of date: running it again would do the job
            # a second time (a retry that failed has a dead letter of its own, which is the one to run).
            latest = job.retries.order_by("-created_at").first()
            if latest is not None and latest.status not in Job.ACTIVE_STATUSES:
                raise DeadLetterNotRequeued(
                    f"Job {job_id} was already retried as job {latest.pk} ({latest.status}); "
                    "this dead letter is out of date.",
                    message_id=job_id,
                )
            retry = operations.job_retry(job_id=job_id, requested_by=requested_by, source=Job.Source.ADMIN)
            if requested_by is not None and requested_by.pk is not None:
                LogEntry.objects.log_actions(
                    requested_by.pk,
                    [job],
                    CHANGE,
                    f"Requeued its dead letter from {_xq(letter.queue_name)}: retried as job {retry.pk}.",
                )
                LogEntry.objects.log_actions(
                    requested_by.pk,
                    [retry],
                    ADDITION,
                    f"Created by requeueing the dead letter of job {job.pk} from {_xq(letter.queue_name)}.",
                )
    except DeadLetterNotRequeued:
        raise
    except JobsError as exc:  # InvalidTransition (not failed, being retried), UnknownActor, ...
        raise DeadLetterNotRequeued(exc.message, message_id=job_id) from exc
    return retry


def _log_requeued(letter: DeadLetter, retry: Job, requested_by: AbstractBaseUser | None) -> None:
    logger.info(
        "Dead letter %s requeued from %s as job %s.",
        letter.message_id,
        _xq(letter.queue_name),
        retry.pk,
        extra={
            "action": "dead_letter_requeued",
            "job_id": letter.message_id,
            "retry_id": str(retry.pk),
            "queue": letter.queue_name,
            "operator": getattr(requested_by, "username", None),
        },
    )
