"""The broker, with the ledger as the outbox for what RabbitMQ cannot take now or should not hold."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import dramatiq
from django.conf import settings
from django.db import DatabaseError
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import BrokerConnectionError

from apps.jobs import runtime

logger = logging.getLogger(__name__)

# The mixin goes before a concrete broker; to the type checker it is one, so super().enqueue() resolves.
if TYPE_CHECKING:
    _MixinBase = dramatiq.Broker
else:
    _MixinBase = object


class LedgerBrokerMixin(_MixinBase):
    """enqueue() that leaves to the ledger what the ledger must record first or RabbitMQ cannot take.

    - A retry of the message this worker thread processes (Retries' re-enqueue) is not published
      here: it is handed to the delivery, and the ledger publishes it once RETRYING is committed.
    - A delay longer than JOBS_MAX_BROKER_DELAY_MS waits in the database, not unacknowledged in a
      worker's memory, where RabbitMQ's consumer_timeout would reset the channel.
    - RabbitMQ unreachable: the message is written to the ledger as pending and the relay publishes
      it once RabbitMQ is back (actor.send(), schedule ticks, delayed moves).
    - A message the ledger could not store (a NUL character) or RabbitMQ would refuse (too large)
      raises at once, in the sender.
    The ledger's own publishes (submit, relay, retries, postponed messages) pass straight through.
    """

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        if runtime.is_ledger_publish(message.message_id):
            return super().enqueue(message, delay=delay)
        delivery = runtime.running_job()
        if delivery is not None and delivery.job_id == message.message_id:
            delivery.retry_delay_ms = delay or 0
            return message
        _refuse_unsendable(message)
        if delay and delay > settings.JOBS_MAX_BROKER_DELAY_MS and self._hold(message, delay):
            return message
        try:
            return super().enqueue(message, delay=delay)
        except BrokerConnectionError:
            if self._hold(message, delay):
                return message
            raise

    def _hold(self, message: dramatiq.Message, delay: Any) -> bool:
        from apps.jobs import services  # models are not importable when the broker is built

        try:
            services.job_hold_for_relay(message=message, delay_ms=delay)
        except DatabaseError:
            logger.exception("Neither RabbitMQ nor the ledger could take message %s.", message.message_id)
            return False
        return True


def _refuse_unsendable(message: dramatiq.Message) -> None:
    """Raise in the sender for a message that could never be recorded (NUL, NaN) or published (size)."""
    from apps.jobs.services import validation  # models are not importable when the broker is built

    data = message.encode()
    # Cheap tests of the encoded body; the exact checks (and their errors) only when one may fail.
    if b"\\u0000" in data or b"NaN" in data or b"Infinity" in data:
        validation.json_arguments(message.actor_name, message.args, message.kwargs)
    if len(data) > settings.JOBS_MAX_MESSAGE_BYTES:
        validation.message_check_size(message)


class LedgerRabbitmqBroker(LedgerBrokerMixin, RabbitmqBroker):
    """The project's broker: RabbitMQ with publisher confirms, the ledger as its outbox."""


class LedgerStubBroker(LedgerBrokerMixin, StubBroker):
    """Dramatiq's in-memory broker with the same enqueue rules, for the unit tests."""
