"""The RabbitMQ broker, with the ledger as a fallback for what RabbitMQ cannot take or should not hold."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from django.conf import settings
from django.db import DatabaseError
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import BrokerConnectionError

from apps.jobs import runtime

logger = logging.getLogger(__name__)


class LedgerRabbitmqBroker(RabbitmqBroker):
    """RabbitmqBroker whose enqueue hands a message to the ledger's relay instead of failing or waiting long.

    - RabbitMQ unreachable: the message is written to the ledger as pending and the relay
      publishes it once RabbitMQ is back (actor.send(), schedule ticks, retries, delayed moves).
    - A delay longer than JOBS_MAX_BROKER_DELAY_MS: it waits in the database, not unacknowledged
      in a worker's memory, where RabbitMQ's consumer_timeout would reset the channel.
    The ledger's own publishes (job_publish, the relay) are left alone: they handle both cases.
    """

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        if runtime.is_publishing(message.message_id):
            return super().enqueue(message, delay=delay)
        if delay and delay > settings.JOBS_MAX_BROKER_DELAY_MS and self._hold(message, delay):
            return message
        try:
            return super().enqueue(message, delay=delay)
        except BrokerConnectionError:
            if self._hold(message, delay):
                return message
            raise

    def _hold(self, message: dramatiq.Message, delay: Any) -> bool:
        running = runtime.current()
        if running is not None and str(running.job_id) == message.message_id:
            running.retry_held_ms = delay or 0  # the ledger records the retry as held when the attempt ends
            return True
        from apps.jobs import services  # models are not importable when the broker is built

        try:
            services.job_hold_for_relay(message=message, delay_ms=delay)
        except DatabaseError:
            logger.exception("Neither RabbitMQ nor the ledger could take message %s.", message.message_id)
            return False
        return True
