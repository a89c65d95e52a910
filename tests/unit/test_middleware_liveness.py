"""The liveness and relay threads: a blocked publish never stops the heartbeats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from apps.jobs import runtime, services
from apps.jobs.middleware import Liveness, Relay
from apps.jobs.models import Job


@pytest.mark.django_db(transaction=True)
def test_heartbeats__go_on_while_the_relay_is_blocked_on_a_publish(
    job_factory: Callable[..., Job], settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hole 9: one keeper thread did both; a publish blocked by RabbitMQ (memory alarm, stalled
    # network) stopped the heartbeats, and another host took over jobs still running here.
    settings.JOBS_KEEPER_INTERVAL_S = 0.05
    settings.JOBS_HEARTBEAT_INTERVAL_S = 0.1
    unblock = threading.Event()
    monkeypatch.setattr(services, "jobs_relay_due", lambda **_: unblock.wait(10))
    stale = timezone.now() - timedelta(minutes=5)
    job = job_factory(status=Job.Status.RUNNING, attempts=1, heartbeat_at=stale)
    delivery = runtime.delivery_open(SimpleNamespace(message_id=str(job.pk)))
    runtime.delivery_started(delivery, 1)
    liveness, relay = Liveness(), Relay()
    try:
        relay.after_worker_boot(None, None)
        liveness.after_worker_boot(None, None)
        time.sleep(0.5)
        job.refresh_from_db()
        assert job.heartbeat_at > stale
    finally:
        unblock.set()
        relay.after_worker_shutdown(None, None)
        liveness.after_worker_shutdown(None, None)
        runtime.delivery_close()
