"""The example workloads' periodic actors: expired-session cleanup and the daily report."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import dramatiq
import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from apps.jobs import services
from apps.jobs.models import Job
from apps.workloads import services as workloads_services
from apps.workloads.models import Report
from apps.workloads.schedules import generate_daily_report
from tests.unit.conftest import run_all, run_job

pytestmark = pytest.mark.django_db(transaction=True)

Status = Job.Status


def test_cleanup_expired_sessions__deletes_only_expired_sessions(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    # Given two expired sessions and one still valid
    now = timezone.now()
    for key, expires in [("old-1", -dt.timedelta(days=1)), ("old-2", -dt.timedelta(seconds=5))]:
        Session.objects.create(session_key=key, session_data="x", expire_date=now + expires)
    Session.objects.create(session_key="live", session_data="x", expire_date=now + dt.timedelta(days=1))

    # When the cleanup job runs
    job = services.job_submit(actor="jobs.cleanup_expired_sessions")
    job = run_job(stub_broker, stub_worker, job)

    # Then only the valid session is left
    assert job.status == Status.SUCCEEDED
    assert job.result == {"deleted": 2}
    assert list(Session.objects.values_list("session_key", flat=True)) == ["live"]


def test_generate_daily_report__builds_one_report_of_the_day_however_often_it_ticks(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, job_factory: Callable[..., Job]
) -> None:
    # Given jobs created on the day asked for and on the day after
    day = dt.date(2026, 3, 14)
    on_the_day = job_factory(actor_name="jobs.send_email")
    the_day_after = job_factory(actor_name="jobs.send_email")
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=timezone.get_current_timezone())
    Job.objects.filter(pk=on_the_day.pk).update(created_at=noon)
    Job.objects.filter(pk=the_day_after.pk).update(created_at=noon + dt.timedelta(days=1))

    # When the daily tick runs twice for that day (a doubled tick, or an operator's rerun)
    ticks = [
        services.job_submit(actor="jobs.generate_daily_report", kwargs={"day": day.isoformat()})
        for _ in range(2)
    ]
    run_all(stub_broker, stub_worker)

    # Then both succeed with the same report, built once, holding only that day's jobs
    results = [Job.objects.get(pk=tick.pk).result for tick in ticks]
    report = Report.objects.get()
    assert results == [{"report_id": report.pk, "day": "2026-03-14"}] * 2
    builds = Job.objects.filter(actor_name="jobs.generate_report")
    assert [(job.status, job.trigger_object_id) for job in builds] == [(Status.SUCCEEDED, str(report.pk))]
    report.refresh_from_db()
    rows = list(csv.DictReader(io.StringIO(report.file.read().decode())))
    assert [row["id"] for row in rows] == [str(on_the_day.pk)]


def test_generate_daily_report__a_late_tick_reports_the_day_before_the_tick_not_before_the_clock(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the midnight tick, picked up (or retried) once the worker's clock reads the next day
    tick = timezone.now().replace(microsecond=0)
    tick_day = timezone.localtime(tick).date()
    monkeypatch.setattr(timezone, "localdate", lambda *args, **kwargs: tick_day + dt.timedelta(days=1))

    # When the scheduler's message runs (periodiq sends it with the tick in scheduled_at)
    message = generate_daily_report.send_with_options(scheduled_at=tick.isoformat())
    run_all(stub_broker, stub_worker)

    # Then the report covers the day before the tick, whatever the worker's clock says
    job = Job.objects.get(pk=message.message_id)
    assert job.status == Status.SUCCEEDED, job.last_error
    expected = (tick_day - dt.timedelta(days=1)).isoformat()
    assert job.result["day"] == expected
    report = Report.objects.get(pk=job.result["report_id"])
    assert report.filters == {"created_from": expected, "created_to": expected}


def test_generate_daily_report__a_manual_send_without_a_tick_reports_yesterday(
    stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    # When an operator sends the daily report by hand (no tick, no day)
    job = services.job_submit(actor="jobs.generate_daily_report")
    job = run_job(stub_broker, stub_worker, job)

    # Then it reports the day before the worker's local date
    assert job.status == Status.SUCCEEDED, job.last_error
    assert job.result["day"] == (timezone.localdate() - dt.timedelta(days=1)).isoformat()


@pytest.mark.parametrize(
    ("scheduled_at", "time_zone", "day"),
    [
        pytest.param("2026-03-15T00:00:00+00:00", "UTC", "2026-03-14", id="midnight-utc"),
        pytest.param("2026-03-15T00:00:05+00:00", "UTC", "2026-03-14", id="five-seconds-late"),
        pytest.param("2026-03-14T23:00:00+00:00", "Europe/Berlin", "2026-03-14", id="utc-offset-to-local"),
        pytest.param("2026-03-15T00:00:00-04:00", "America/New_York", "2026-03-14", id="local-offset"),
        pytest.param("2026-03-15T00:00:00+01:00", "UTC", "2026-03-13", id="scheduler-in-another-zone"),
        pytest.param("2026-03-01T00:00:00+00:00", "UTC", "2026-02-28", id="month-boundary"),
    ],
)
def test_report_day_for_tick__is_the_day_before_the_ticks_local_date(
    settings: Any, scheduled_at: str, time_zone: str, day: str
) -> None:
    settings.TIME_ZONE = time_zone

    assert workloads_services.report_day_for_tick(scheduled_at=scheduled_at) == dt.date.fromisoformat(day)


def test_report_day_for_tick__without_a_tick_is_the_day_before_today() -> None:
    assert workloads_services.report_day_for_tick(scheduled_at=None) == timezone.localdate() - dt.timedelta(
        days=1
    )
