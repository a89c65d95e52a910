"""What RabbitMQ and the ledger say about each queue: depths for the API, the console and /readyz."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import dramatiq
import pika
import pika.exceptions
from django.conf import settings

from apps.jobs import stats
from apps.jobs.exceptions import BrokerUnavailable

#: Seconds to wait for RabbitMQ before calling it unreachable (a web request is waiting).
CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class QueueDepth:
    name: str
    #: RabbitMQ's counts are None when it does not have the queue yet (no worker declared it).
    ready: int | None
    delayed: int
    dead: int | None
    consumers: int | None
    running: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def broker_connection() -> pika.BlockingConnection:
    """A short-lived connection for a web request (the caller closes it); BrokerUnavailable if none."""
    parameters = pika.URLParameters(settings.RABBITMQ_URL)
    parameters.socket_timeout = CONNECT_TIMEOUT_S
    parameters.blocked_connection_timeout = CONNECT_TIMEOUT_S
    parameters.connection_attempts = 1
    try:
        return pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailable(f"RabbitMQ is unreachable: {exc!r}") from exc


def broker_check() -> None:
    """Raise BrokerUnavailable unless RabbitMQ accepts a connection."""
    broker_connection().close()


def queue_names() -> list[str]:
    """The queues the actors declared (not their .DQ and .XQ companions)."""
    return sorted(name for name in dramatiq.get_broker().get_declared_queues() if "." not in name)


def queue_depths() -> list[QueueDepth]:
    """Per queue: ready and dead messages and consumers in RabbitMQ; delayed and running jobs in the ledger.

    Delayed jobs are counted in the ledger because RabbitMQ cannot say: a worker takes a delayed
    message from .DQ at once and holds it unacknowledged until it is due (and delays past
    JOBS_MAX_BROKER_DELAY_MS wait in the ledger, not in RabbitMQ). Raises BrokerUnavailable.
    """
    running = stats.running_per_queue()
    delayed = stats.delayed_per_queue()
    names = queue_names()
    counts = message_counts([*names, *(f"{name}.XQ" for name in names)])
    depths = []
    for name in names:
        main, dead = counts[name], counts[f"{name}.XQ"]
        depths.append(
            QueueDepth(
                name=name,
                ready=main[0] if main else None,
                delayed=delayed.get(name, 0),
                dead=dead[0] if dead else None,
                consumers=main[1] if main else None,
                running=running.get(name, 0),
            )
        )
    return depths


def message_counts(names: list[str]) -> dict[str, tuple[int, int] | None]:
    """(ready messages, consumers) of each named RabbitMQ queue; None for one RabbitMQ does not have.

    Read with passive declares, which never create a queue. Raises BrokerUnavailable.
    """
    connection = broker_connection()
    try:
        channel = connection.channel()
        counts: dict[str, tuple[int, int] | None] = {}
        for name in names:
            try:
                declared = channel.queue_declare(queue=name, passive=True).method
                counts[name] = (declared.message_count, declared.consumer_count)
            except pika.exceptions.ChannelClosedByBroker:  # 404: not declared yet; the channel is closed
                counts[name] = None
                channel = connection.channel()
        return counts
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailable(f"RabbitMQ failed while reading the queues: {exc!r}") from exc
    finally:
        if connection.is_open:
            connection.close()
