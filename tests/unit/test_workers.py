"""The register of worker processes: heartbeats on the database's clock, stale workers, the console page."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import DatabaseError, connection
from django.test import Client
from django.utils import timezone

from apps.jobs import runtime, services
from apps.jobs.admin.workers import duration
from apps.jobs.middleware import Liveness
from apps.jobs.models import Job, Worker
from apps.jobs.services import workers
from tests.unit.conftest import start_worker

WORKERS_URL = "/admin/console/workers/"


def _heartbeat(worker_id: str = "host-a:boot:100:1", **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "worker_id": worker_id,
        "host": worker_id.split(":")[0],
        "pid": int(worker_id.split(":")[2]),
        "queues": ["emails", "default"],
        "threads": 4,
        "started_at": timezone.now() - timedelta(minutes=5),
        "jobs_in_progress": 0,
    }
    fields.update(overrides)
    workers.worker_heartbeat(**fields)


def _age(worker_id: str, *, last_seen_s: float, **fields: Any) -> None:
    """Move the worker's last heartbeat `last_seen_s` into the past."""
    Worker.objects.filter(worker_id=worker_id).update(
        last_seen_at=timezone.now() - timedelta(seconds=last_seen_s), **fields
    )


def _database_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def _wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while (value := predicate()) is None or value is False:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return value


# --- services ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_worker_heartbeat__keeps_one_row_per_worker_and_updates_it() -> None:
    # Given a worker that sent one heartbeat a minute ago
    _heartbeat(jobs_in_progress=1)
    _age("host-a:boot:100:1", last_seen_s=60)
    first = Worker.objects.get()

    # When it sends the next one, busier
    _heartbeat(jobs_in_progress=3, threads=8)

    # Then its one row says so, seen just now, and still started when it first said
    worker = Worker.objects.get()
    assert worker.pk == first.pk
    assert (worker.jobs_in_progress, worker.threads) == (3, 8)
    assert worker.last_seen_at > first.last_seen_at
    assert worker.started_at == first.started_at
    assert worker.queues == ["default", "emails"]
    assert (worker.host, worker.pid, worker.stopped_at) == ("host-a", 100, None)


@pytest.mark.django_db
def test_worker_heartbeat__another_worker_id_is_another_row() -> None:
    _heartbeat("host-a:boot:100:1")
    _heartbeat("host-a:boot:100:2")  # the pid reused by a new process

    assert Worker.objects.count() == 2


@pytest.mark.django_db
def test_worker_heartbeat__times_are_the_databases_even_on_a_host_with_a_skewed_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a host whose clock is an hour ahead, and a process it booted ten minutes ago by that clock
    skewed_now = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(workers.timezone, "now", lambda: skewed_now)

    _heartbeat(started_at=skewed_now - timedelta(minutes=10))

    # Then it is seen now and up for ten minutes, by the database's clock
    worker = Worker.objects.get()
    database_now = _database_now()
    assert abs(worker.last_seen_at - database_now) < timedelta(seconds=5)
    assert abs(worker.started_at - (database_now - timedelta(minutes=10))) < timedelta(seconds=5)


@pytest.mark.django_db
def test_worker_stopped__sets_stopped_at_and_a_heartbeat_clears_it() -> None:
    _heartbeat(jobs_in_progress=2)

    workers.worker_stopped(worker_id="host-a:boot:100:1")
    stopped = Worker.objects.get()
    assert stopped.stopped_at is not None
    assert stopped.jobs_in_progress == 0

    _heartbeat()
    assert Worker.objects.get().stopped_at is None


@pytest.mark.django_db
def test_worker_stopped__an_unknown_worker_is_no_error() -> None:
    workers.worker_stopped(worker_id="never:seen:1:1")

    assert not Worker.objects.exists()


@pytest.mark.django_db
def test_workers_prune__deletes_only_workers_not_seen_for_long() -> None:
    _heartbeat("old:b:1:1")
    _heartbeat("old-stopped:b:2:1")
    _heartbeat("recent:b:3:1")
    _age("old:b:1:1", last_seen_s=8 * 86_400)
    _age("old-stopped:b:2:1", last_seen_s=8 * 86_400, stopped_at=timezone.now() - timedelta(days=8))
    _age("recent:b:3:1", last_seen_s=86_400)

    assert workers.workers_prune(older_than=timedelta(days=7)) == 2
    assert list(Worker.objects.values_list("host", flat=True)) == ["recent"]


@pytest.mark.django_db
def test_workers_list__marks_workers_silent_for_longer_than_the_lease_stale_and_lists_them_first(
    settings,
) -> None:
    settings.JOBS_LEASE_S = 60
    _heartbeat("a-fresh:b:1:1")
    _heartbeat("b-late:b:2:1")
    _heartbeat("c-silent:b:3:1")
    _heartbeat("d-stopped:b:4:1")
    _age("b-late:b:2:1", last_seen_s=50)
    _age("c-silent:b:3:1", last_seen_s=90)
    workers.worker_stopped(worker_id="d-stopped:b:4:1")
    _age("d-stopped:b:4:1", last_seen_s=3_600)  # stopped long ago is never stale

    listed = [(w.host, w.state, w.stale) for w in workers.workers_list()]

    assert listed == [
        ("c-silent", "stale", True),
        ("a-fresh", "running", False),
        ("b-late", "running", False),
        ("d-stopped", "stopped", False),
    ]


@pytest.mark.django_db
def test_workers_list__seen_ago_and_up_for_are_on_the_databases_clock() -> None:
    _heartbeat(started_at=timezone.now() - timedelta(hours=2))
    _age("host-a:boot:100:1", last_seen_s=30)

    worker = workers.workers_list().get()

    assert timedelta(seconds=29) < worker.seen_ago < timedelta(seconds=40)
    assert timedelta(hours=2) <= worker.up_for < timedelta(hours=2, seconds=10)


@pytest.mark.django_db
def test_workers_list__hides_workers_stopped_more_than_a_day_ago_unless_asked() -> None:
    _heartbeat("recent:b:1:1")
    _heartbeat("old:b:2:1")
    _heartbeat("dead:b:3:1")
    workers.worker_stopped(worker_id="recent:b:1:1")
    _age("old:b:2:1", last_seen_s=2 * 86_400, stopped_at=timezone.now() - timedelta(days=2))
    _age("dead:b:3:1", last_seen_s=2 * 86_400)  # never stopped: it died, and stays on show

    assert {w.host for w in workers.workers_list()} == {"recent", "dead"}
    assert {w.host for w in workers.workers_list(include_old_stopped=True)} == {"recent", "old", "dead"}


def test_duration__is_short_and_readable() -> None:
    assert duration(timedelta(seconds=12.7)) == "12 s"
    assert duration(timedelta(minutes=5, seconds=3)) == "5 min 3 s"
    assert duration(timedelta(hours=2, minutes=5, seconds=9)) == "2 h 5 min"
    assert duration(timedelta(days=3, hours=4, minutes=1)) == "3 d 4 h"
    assert duration(timedelta(seconds=-2)) == "0 s"  # a clock step never shows a negative age
    assert duration(None) == "-"


# --- the console page -------------------------------------------------------------------------------


def _staff(*permissions: str) -> Client:
    user = get_user_model().objects.create_user("staff", "staff@example.com", "password", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="jobs", codename__in=permissions)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_workers_page__lists_workers_with_the_stale_ones_marked(admin_user: Any, settings) -> None:
    settings.JOBS_LEASE_S = 60
    _heartbeat("alive-host:b:101:1", jobs_in_progress=2, queues=["default", "emails"])
    _heartbeat("silent-host:b:102:1")
    _age("silent-host:b:102:1", last_seen_s=300)
    client = Client()
    client.force_login(admin_user)

    response = client.get(WORKERS_URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert "alive-host" in page and "silent-host" in page
    assert page.index("silent-host") < page.index("alive-host")  # stale first
    assert 'class="worker-stale"' in page
    assert page.count('class="worker-stale"') == 1
    assert "default, emails" in page
    assert "5 min 0 s ago" in page or "5 min 1 s ago" in page
    assert "/admin/jobs/job/?status__exact=running" in page
    assert '<meta http-equiv="refresh" content="10">' in page
    assert response.context["title"] == "Workers"


@pytest.mark.django_db
def test_workers_page__escapes_what_workers_report(admin_user: Any) -> None:
    _heartbeat("<script>alert(1)</script>:b:7:1", queues=["<img src=x onerror=alert(2)>"])
    client = Client()
    client.force_login(admin_user)

    page = client.get(WORKERS_URL).content.decode()

    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<img src=x" not in page and "&lt;img src=x" in page


@pytest.mark.django_db
def test_workers_page__hides_old_stopped_workers_unless_all_is_asked(admin_user: Any) -> None:
    _heartbeat("long-gone:b:1:1")
    _age("long-gone:b:1:1", last_seen_s=2 * 86_400, stopped_at=timezone.now() - timedelta(days=2))
    client = Client()
    client.force_login(admin_user)

    assert "long-gone" not in client.get(WORKERS_URL).content.decode()
    assert "long-gone" in client.get(WORKERS_URL + "?all=1").content.decode()


@pytest.mark.django_db
def test_workers_page__refused_to_staff_without_permission() -> None:
    assert _staff().get(WORKERS_URL).status_code == 403


@pytest.mark.parametrize("permission", ["view_worker", "view_job"])
@pytest.mark.django_db
def test_workers_page__open_to_staff_who_may_view_workers_or_jobs(permission: str) -> None:
    assert _staff(permission).get(WORKERS_URL).status_code == 200


@pytest.mark.django_db
def test_workers_page__sends_anonymous_users_to_the_login() -> None:
    response = Client().get(WORKERS_URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


# --- the Liveness middleware ------------------------------------------------------------------------


@pytest.fixture
def fast_keeper(settings) -> None:
    settings.JOBS_KEEPER_INTERVAL_S = 0.05
    settings.JOBS_HEARTBEAT_INTERVAL_S = 0.1


@pytest.fixture
def running_delivery(job_factory: Callable[..., Job]) -> Iterator[Job]:
    """A job this process runs (attempt 1), its lease five minutes old."""
    job = job_factory(
        status=Job.Status.RUNNING, attempts=1, heartbeat_at=timezone.now() - timedelta(minutes=5)
    )
    delivery = runtime.delivery_open(SimpleNamespace(message_id=str(job.pk)))
    runtime.delivery_started(delivery, 1)
    yield job
    runtime.delivery_close()


def _fake_worker(threads: int = 3) -> Any:
    """What Liveness reads of a dramatiq Worker: its consumers (delay queues too) and thread count."""
    return SimpleNamespace(
        consumers={"default": None, "default.DQ": None, "emails": None, "emails.DQ": None},
        worker_threads=threads,
    )


@pytest.mark.django_db(transaction=True)
def test_liveness__each_tick_records_this_worker_and_the_shutdown_its_stop(
    fast_keeper: None, running_delivery: Job
) -> None:
    liveness = Liveness()
    liveness.after_worker_boot(None, _fake_worker())
    try:
        worker = _wait_for(lambda: Worker.objects.filter(worker_id=runtime.worker_id()).first())
        first_seen = worker.last_seen_at
        assert (worker.host, worker.pid) == (runtime.HOSTNAME, os.getpid())
        assert (worker.queues, worker.threads, worker.jobs_in_progress) == (["default", "emails"], 3, 1)
        assert worker.stopped_at is None
        # And the next ticks keep it fresh
        _wait_for(lambda: Worker.objects.get(pk=worker.pk).last_seen_at > first_seen)
    finally:
        liveness.after_worker_shutdown(None, None)

    assert liveness.thread is not None and not liveness.thread.is_alive()
    stopped = Worker.objects.get(worker_id=runtime.worker_id())
    assert stopped.stopped_at is not None
    assert stopped.jobs_in_progress == 0
    # And no heartbeat in flight at the stop cleared it afterwards
    time.sleep(0.3)
    assert Worker.objects.get(pk=stopped.pk).stopped_at is not None


@pytest.mark.parametrize("error", [RuntimeError("bug"), DatabaseError("relation does not exist")])
@pytest.mark.django_db(transaction=True)
def test_liveness__a_failing_worker_heartbeat_never_stops_the_job_heartbeats(
    fast_keeper: None,
    running_delivery: Job,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    calls: list[int] = []

    def failing_heartbeat(**_: Any) -> None:
        calls.append(1)
        raise error

    sweeps: list[int] = []
    monkeypatch.setattr(workers, "worker_heartbeat", failing_heartbeat)
    monkeypatch.setattr(services, "jobs_recover_orphans", lambda **_: sweeps.append(1) or 0)
    job = running_delivery
    liveness = Liveness()
    liveness.after_worker_boot(None, _fake_worker())
    try:
        # The job's lease is renewed, again and again, though every worker heartbeat fails
        for _ in range(3):
            Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
            _wait_for(lambda: Job.objects.get(pk=job.pk).heartbeat_at > timezone.now() - timedelta(minutes=1))
        assert len(calls) >= 3
        # And the keeper still counts the database healthy: the orphan sweep goes on too
        _wait_for(lambda: len(sweeps) >= 2)
        assert liveness.thread is not None and liveness.thread.healthy_since is not None
    finally:
        liveness.after_worker_shutdown(None, None)


@pytest.mark.django_db(transaction=True)
def test_liveness__a_failing_stop_record_does_not_break_the_shutdown(
    fast_keeper: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(**_: Any) -> None:
        raise DatabaseError("the server closed the connection")

    monkeypatch.setattr(workers, "worker_stopped", unavailable)
    liveness = Liveness()
    liveness.after_worker_boot(None, _fake_worker())

    liveness.after_worker_shutdown(None, None)  # does not raise

    assert liveness.thread is not None and not liveness.thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_liveness__a_real_worker_reports_the_queues_it_consumes(
    stub_broker: Any, _process_booted: None, fast_keeper: None
) -> None:
    # The Liveness in the broker's middleware, booted by a Dramatiq worker as rundramatiq does
    worker = start_worker(stub_broker)
    try:
        row = _wait_for(lambda: Worker.objects.filter(worker_id=runtime.worker_id()).first())
        assert row.threads == 2
        assert set(row.queues) >= {"default", "emails", "reports", "batch"}
        assert not any(queue.endswith(".DQ") for queue in row.queues)
    finally:
        worker.stop()

    assert Worker.objects.get(pk=row.pk).stopped_at is not None
