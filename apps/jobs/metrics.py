"""Prometheus metrics of the job ledger and the queues, served at /metrics by the web process.

Dramatiq's own metrics (messages processed, durations per actor) come from each worker's exporter on
its own port; these are what only the system as a whole knows: jobs per status in the ledger, queue
depths in RabbitMQ and how long the oldest due job has waited. They are read on each scrape by a custom
collector in a registry of its own (not prometheus_client's global one, which would add this process's
unrelated default metrics and could collide with other collectors).

Families:

- ``jobs_ledger_jobs{status,actor}``: jobs in an active status (pending, queued, running, retrying), all
  of them; jobs in a final status, only those that finished in the last 24 hours. Counting every finished
  job on each scrape would read the whole ledger (1M rows: a 150 ms sequential scan); the window keeps
  the query on the status and finished_at indexes (30 ms), and a 24 h count is what a dashboard or an
  alert on failures needs (use the workers' counters for exact rates).
- ``jobs_queue_messages{queue,state}``: ready and dead messages in RabbitMQ, delayed jobs in the ledger.
  A state is left out for a queue RabbitMQ does not have yet.
- ``jobs_queue_consumers{queue}``, ``jobs_queue_running{queue}``.
- ``jobs_queue_oldest_waiting_seconds{queue}``: 0 when nothing waits.
- ``jobs_broker_up`` and ``jobs_ledger_up``: 0 when RabbitMQ or the database did not answer; the other
  side's metrics are still served.

Access: open to everyone like /healthz unless settings.JOBS_METRICS_TOKEN is set, in which case the
scraper must send ``Authorization: Bearer <token>``. Without a token, expose /metrics on the internal
network only (the proxy should not route it): queue and actor names are not secrets, but need not be
public either.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import dramatiq
from django.conf import settings
from django.db import Error as DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from apps.jobs import queues, stats
from apps.jobs.exceptions import BrokerUnavailable
from apps.jobs.models import Job

#: Final statuses are counted over this window (see the module's docstring).
FINISHED_WINDOW = timedelta(hours=24)


class JobsCollector:
    """Reads the ledger and RabbitMQ on each scrape: a few indexed queries and one AMQP connection."""

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        now = timezone.now()
        ledger_up = GaugeMetricFamily("jobs_ledger_up", "1 when the job ledger's database answered.")
        broker_up = GaugeMetricFamily("jobs_broker_up", "1 when RabbitMQ answered.")
        try:
            yield from self._ledger(now)
            ledger_up.add_metric([], 1)
        except DatabaseError:
            ledger_up.add_metric([], 0)
        up, queue_metrics = self._queues(now)
        broker_up.add_metric([], 1 if up else 0)
        yield from queue_metrics
        yield ledger_up
        yield broker_up
        duration = GaugeMetricFamily(
            "jobs_metrics_collect_duration_seconds", "Time this scrape took to read the ledger and RabbitMQ."
        )
        duration.add_metric([], time.monotonic() - started)
        yield duration

    def _ledger(self, now: datetime) -> list[Metric]:
        # Built fully before anything is yielded, so a database error leaves no half-written family.
        counts = stats.jobs_per_status_and_actor(finished_since=now - FINISHED_WINDOW)
        # Every declared actor gets every status, 0 included, so a series does not vanish (and go stale)
        # when its last job moves on: alerts on it resolve instead of hanging.
        actors = sorted({*dramatiq.get_broker().get_declared_actors(), *(actor for _, actor in counts)})
        jobs = GaugeMetricFamily(
            "jobs_ledger_jobs",
            "Jobs in the ledger per status and actor: all active ones; final ones finished in the last 24 h.",
            labels=["status", "actor"],
        )
        for status in Job.Status.values:
            for actor in actors:
                jobs.add_metric([status, actor], counts.get((status, actor), 0))
        oldest = stats.oldest_waiting_per_queue(now=now)
        waiting = GaugeMetricFamily(
            "jobs_queue_oldest_waiting_seconds",
            "Seconds the oldest due job of the queue (pending, queued or retrying) has waited for a worker.",
            labels=["queue"],
            unit="seconds",
        )
        for queue in sorted({*queues.queue_names(), *oldest}):
            due_since = oldest.get(queue)
            waiting.add_metric([queue], max((now - due_since).total_seconds(), 0.0) if due_since else 0.0)
        return [jobs, waiting]

    def _queues(self, now: datetime) -> tuple[bool, list[Metric]]:
        """(RabbitMQ answered, the queue families). Without RabbitMQ, running jobs come from the ledger."""
        messages = GaugeMetricFamily(
            "jobs_queue_messages",
            "Messages per queue: ready and dead in RabbitMQ, delayed (waiting for a delay or a backoff) "
            "in the ledger.",
            labels=["queue", "state"],
        )
        consumers = GaugeMetricFamily(
            "jobs_queue_consumers",
            "Consumers (worker connections) of the queue in RabbitMQ.",
            labels=["queue"],
        )
        running = GaugeMetricFamily("jobs_queue_running", "Jobs of the queue running now.", labels=["queue"])
        try:
            depths = queues.queue_depths()
        except BrokerUnavailable:
            try:
                counts = stats.running_per_queue()
            except DatabaseError:
                return False, []
            for queue in sorted({*queues.queue_names(), *counts}):
                running.add_metric([queue], counts.get(queue, 0))
            return False, [running]
        except DatabaseError:
            # queue_depths reads the ledger first; RabbitMQ may still be up, so ask it alone.
            try:
                queues.broker_check()
            except BrokerUnavailable:
                return False, []
            return True, []
        for depth in depths:
            for state, value in (("ready", depth.ready), ("delayed", depth.delayed), ("dead", depth.dead)):
                if value is not None:
                    messages.add_metric([depth.name, state], value)
            if depth.consumers is not None:
                consumers.add_metric([depth.name], depth.consumers)
            running.add_metric([depth.name], depth.running)
        return True, [messages, consumers, running]


#: The registry /metrics serves: this collector only.
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(JobsCollector())


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    # Constant-time comparison: a scraper's token must not be guessable from response times.
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """The metrics in the format the scraper asks for (Prometheus text or OpenMetrics)."""
    token: str = settings.JOBS_METRICS_TOKEN
    if token and not _authorized(request, token):
        return HttpResponse(
            "A bearer token is required.\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)
