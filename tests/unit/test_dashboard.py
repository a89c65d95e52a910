"""The console's dashboard: the ledger's aggregates (apps.jobs.stats) and the page that shows them.

The aggregates run in SQL on PostgreSQL and in Python on SQLite; every figure is checked both ways on
the same handmade ledger (the Python fallback is plain ORM, so it runs on PostgreSQL too), so the
demo and production agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.jobs import stats
from apps.jobs.admin import dashboard
from apps.jobs.models import Job

pytestmark = pytest.mark.django_db
Status = Job.Status
DASHBOARD = "/admin/console/dashboard/"
#: A RabbitMQ URL nobody answers on.
CLOSED_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:1/%2F"


@pytest.fixture(params=["sql", "python"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with PostgreSQL's SQL aggregates, then with the SQLite fallback's Python ones."""
    if request.param == "python":
        monkeypatch.setattr(stats, "_is_postgresql", lambda: False)
    else:
        assert stats._is_postgresql(), "the unit tier runs on PostgreSQL (DATABASE_URL)"
    yield request.param


def finished(
    job_factory: Callable[..., Job],
    *,
    at: datetime,
    duration_ms: float | None,
    status: str = Status.SUCCEEDED,
    **fields: Any,
) -> Job:
    """A job that finished at `at` after running `duration_ms` (None: it never started)."""
    started = None if duration_ms is None else at - timedelta(milliseconds=duration_ms)
    return job_factory(status=status, started_at=started, finished_at=at, **fields)


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def probe_ledger(job_factory: Callable[..., Job], now: datetime) -> None:
    """In the last hour, jobs.probe: 3 succeeded (100, 200, 300 ms) and 1 failed that never started;
    jobs.send_email: 1 succeeded. Around them, jobs that must not count."""
    for minutes, duration in ((50, 100), (30, 300), (10, 200)):
        finished(job_factory, at=now - timedelta(minutes=minutes), duration_ms=duration)
    finished(job_factory, at=now - timedelta(minutes=20), duration_ms=None, status=Status.FAILED)
    finished(job_factory, at=now - timedelta(minutes=5), duration_ms=40, actor_name="jobs.send_email")
    # Not counted: finished before the period, cancelled or skipped, not finished yet.
    finished(job_factory, at=now - timedelta(minutes=61), duration_ms=9_000)
    finished(job_factory, at=now - timedelta(minutes=15), duration_ms=9_000, status=Status.CANCELLED)
    finished(job_factory, at=now - timedelta(minutes=15), duration_ms=None, status=Status.SKIPPED)
    job_factory(status=Status.RUNNING, started_at=now - timedelta(minutes=1))
    job_factory(status=Status.QUEUED)


# --- stats.actor_stats -------------------------------------------------------------------------------


@pytest.mark.usefixtures("probe_ledger")
def test_actor_stats__counts_rates_and_percentiles_of_the_period(backend: str, now: datetime) -> None:
    # When the stats of the last hour are read
    actors = stats.actor_stats(since=now - timedelta(hours=1), until=now)

    # Then there is one row per actor with finished jobs, by name
    assert [actor.actor_name for actor in actors] == ["jobs.probe", "jobs.send_email"]
    probe, email = actors
    # And jobs.probe finished 4 (3 succeeded + 1 failed): a 25 % failure rate, 4 jobs an hour
    assert (probe.succeeded, probe.failed, probe.finished) == (3, 1, 4)
    assert probe.failure_rate == 0.25
    assert probe.throughput_per_min == pytest.approx(4 / 60)
    # And its percentiles interpolate like percentile_cont over the 3 known durations
    assert probe.p50_ms == pytest.approx(200)
    assert probe.p95_ms == pytest.approx(290)
    assert (email.finished, email.failure_rate, email.p50_ms, email.p95_ms) == (
        1,
        0.0,
        pytest.approx(40),
        pytest.approx(40),
    )


def test_actor_stats__window_is_half_open_and_durations_unknown_are_none(
    backend: str, job_factory: Callable[..., Job], now: datetime
) -> None:
    since = now - timedelta(hours=1)
    finished(job_factory, at=since, duration_ms=None, status=Status.FAILED)  # the first instant counts
    finished(job_factory, at=now, duration_ms=10)  # the end is excluded

    [actor] = stats.actor_stats(since=since, until=now)

    assert (actor.succeeded, actor.failed) == (0, 1)
    assert actor.failure_rate == 1.0
    assert (actor.p50_ms, actor.p95_ms) == (None, None)


def test_actor_stats__empty_ledger_has_no_rows(backend: str, now: datetime) -> None:
    assert stats.actor_stats(since=now - timedelta(days=1), until=now) == []


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.95, 7.0),
        ([100.0, 200.0, 300.0], 0.5, 200.0),
        ([100.0, 200.0, 300.0], 0.95, 290.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
    ],
)
def test_percentile_cont__interpolates_like_postgresql(
    values: list[float], fraction: float, expected: float | None
) -> None:
    assert stats.percentile_cont(values, fraction) == (None if expected is None else pytest.approx(expected))


# --- stats.throughput_series -------------------------------------------------------------------------


def test_throughput_series__counts_each_bucket_and_returns_empty_ones(
    backend: str, job_factory: Callable[..., Job]
) -> None:
    # Given four 15-minute buckets from 12:00 to 13:00
    since = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    until = since + timedelta(hours=1)
    at = {minute: since + timedelta(minutes=minute) for minute in (0, 14, 15, 44)}
    finished(job_factory, at=at[0], duration_ms=1)  # a bucket's first instant is in it
    finished(job_factory, at=at[14], duration_ms=1, status=Status.FAILED)
    finished(job_factory, at=at[15], duration_ms=1)
    finished(job_factory, at=at[44], duration_ms=1, status=Status.FAILED)
    finished(job_factory, at=at[44], duration_ms=1, status=Status.FAILED)
    # And jobs outside the window or neither succeeded nor failed
    finished(job_factory, at=since - timedelta(microseconds=1), duration_ms=1)
    finished(job_factory, at=until, duration_ms=1)
    finished(job_factory, at=at[15], duration_ms=1, status=Status.CANCELLED)

    # When the series is read
    series = stats.throughput_series(since=since, buckets=4, until=until)

    # Then every bucket is there, empty ones included, with its bounds and counts
    assert [(b.start.minute, b.end - b.start) for b in series] == [
        (minute, timedelta(minutes=15)) for minute in (0, 15, 30, 45)
    ]
    assert [(b.succeeded, b.failed) for b in series] == [(1, 1), (1, 0), (0, 2), (0, 0)]


def test_throughput_series__refuses_an_empty_window(now: datetime) -> None:
    with pytest.raises(ValueError, match="buckets"):
        stats.throughput_series(since=now - timedelta(hours=1), buckets=0, until=now)
    with pytest.raises(ValueError, match="before"):
        stats.throughput_series(since=now, buckets=4, until=now)


# --- stats for the queues and /metrics ---------------------------------------------------------------


def test_oldest_waiting_per_queue__skips_delayed_jobs_and_dates_retries_by_their_due_time(
    job_factory: Callable[..., Job], now: datetime
) -> None:
    old = job_factory(status=Status.QUEUED, queue_name="emails")
    Job.objects.filter(pk=old.pk).update(created_at=now - timedelta(minutes=10))
    job_factory(status=Status.QUEUED, queue_name="emails")  # newer
    job_factory(status=Status.QUEUED, queue_name="reports", scheduled_at=now + timedelta(hours=1))  # delayed
    job_factory(status=Status.RETRYING, queue_name="batch", next_retry_at=now + timedelta(minutes=1))
    due_retry = now - timedelta(minutes=3)
    job_factory(status=Status.RETRYING, queue_name="default", next_retry_at=due_retry)
    job_factory(status=Status.RUNNING, queue_name="reports")

    oldest = stats.oldest_waiting_per_queue(now=now)

    assert oldest == {"emails": now - timedelta(minutes=10), "default": due_retry}


# --- The page -----------------------------------------------------------------------------------------


@pytest.fixture
def operator(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def staff(*permissions: str) -> Client:
    user = get_user_model().objects.create_user(f"staff-{'-'.join(permissions) or 'only'}", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.usefixtures("probe_ledger")
def test_dashboard__shows_the_figures_of_the_last_hour_with_charts(operator: Client) -> None:
    response = operator.get(DASHBOARD)

    assert response.status_code == 200
    assert response.context["title"] == "Dashboard"
    assert response.context["period"].key == "hour"
    html = response.content.decode()
    # The page reloads itself and draws its charts inline, without scripts of its own
    assert '<meta http-equiv="refresh" content="10">' in html
    assert html.count('<svg class="dash-chart"') == 1
    assert html.count('<svg class="dash-bar"') == 3 * 2  # 3 bars per actor row
    assert "dashboard.js" not in html and "cdn" not in html.lower()
    # The actor table has jobs.probe's figures: 4 finished, 1 failed, 25 %, p50 200 / p95 290 ms
    probe = next(row for row in response.context["actors"] if row.stats.actor_name == "jobs.probe")
    assert (probe.stats.finished, probe.stats.failed, probe.failure_percent) == (4, 1, 25.0)
    assert "25.0 %" in html
    assert "200 / 290" in html
    # And the chart's totals are the table's
    chart = response.context["chart"]
    assert (chart.total_succeeded, chart.total_failed) == (4, 1)
    assert "4 succeeded, 1 failed" in chart.description
    # And each actor links to its jobs, and its failures to its failed jobs
    jobs = reverse("admin:jobs_job_changelist")
    assert f'href="{jobs}?actor_name=jobs.probe"' in html
    assert f'href="{jobs}?actor_name=jobs.probe&amp;status__exact=failed"' in html


def test_dashboard__day_period_includes_older_jobs_and_unknown_periods_fall_back_to_the_hour(
    operator: Client, job_factory: Callable[..., Job], now: datetime
) -> None:
    finished(job_factory, at=now - timedelta(hours=5), duration_ms=100)

    day = operator.get(DASHBOARD, {"period": "day"})
    hour = operator.get(DASHBOARD, {"period": "week"})

    assert day.status_code == hour.status_code == 200
    assert day.context["period"].key == "day"
    assert [row.stats.actor_name for row in day.context["actors"]] == ["jobs.probe"]
    assert len(day.context["chart"].bars) == 24
    assert hour.context["period"].key == "hour"
    assert hour.context["actors"] == []
    assert len(hour.context["chart"].bars) == 12
    assert "No job finished in this period." in hour.content.decode()


def test_dashboard__lists_the_queues_with_links_to_their_dead_letters(operator: Client) -> None:
    response = operator.get(DASHBOARD)

    assert response.status_code == 200
    queues = {queue.name: queue for queue in response.context["queues"]}
    assert set(queues) == {"default", "emails", "reports", "batch"}
    for name, queue in queues.items():
        try:
            expected = reverse("console:dead-letters-queue", kwargs={"queue": name})
        except NoReverseMatch:  # the dead letters page is not there yet
            expected = None
        assert queue.dead_letters_url == expected


def test_dead_letters_url__is_none_while_the_page_does_not_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_route(*args: Any, **kwargs: Any) -> str:
        raise NoReverseMatch("console:dead-letters-queue")

    monkeypatch.setattr(dashboard, "reverse", no_route)

    assert dashboard._dead_letters_url("emails") is None


def test_dashboard__shows_the_error_and_the_ledger_figures_when_rabbitmq_is_unreachable(
    operator: Client, settings: Any, job_factory: Callable[..., Job], now: datetime
) -> None:
    # Given RabbitMQ on a closed port, and the ledger with one running job and one waiting since 5 min
    settings.RABBITMQ_URL = CLOSED_RABBITMQ_URL
    job_factory(status=Status.RUNNING, queue_name="emails")
    waiting = job_factory(status=Status.QUEUED, queue_name="reports")
    Job.objects.filter(pk=waiting.pk).update(created_at=now - timedelta(minutes=5, seconds=3))

    # When an operator opens the dashboard
    response = operator.get(DASHBOARD)

    # Then the page is there, saying RabbitMQ is unreachable
    assert response.status_code == 200
    assert response.context["broker_error"]
    assert "RabbitMQ is unreachable" in response.content.decode()
    # And the queues show what the ledger knows, and nothing RabbitMQ would say
    queues = {queue.name: queue for queue in response.context["queues"]}
    assert queues["emails"].running == 1
    assert queues["reports"].oldest_waiting.startswith("5 min")
    assert all(queue.ready is None and queue.dead is None for queue in queues.values())


def test_dashboard__escapes_actor_names_everywhere(operator: Client, job_factory: Callable[..., Job]) -> None:
    evil = '<script>alert("x")</script>'
    finished(job_factory, at=timezone.now() - timedelta(minutes=1), duration_ms=5, actor_name=evil)
    finished(
        job_factory,
        at=timezone.now() - timedelta(minutes=1),
        duration_ms=None,
        status=Status.FAILED,
        actor_name=evil,
    )

    response = operator.get(DASHBOARD)

    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in html
    # In the table, in the bars' tooltips (SVG <title>) and in the links' query strings
    assert html.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= 4
    assert "actor_name=%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E" in html


def test_dashboard__needs_the_view_job_permission(job_factory: Callable[..., Job]) -> None:
    assert staff().get(DASHBOARD).status_code == 403
    assert staff("view_job").get(reverse("console:dashboard")).status_code == 200


def test_dashboard__sends_anonymous_visitors_to_the_login() -> None:
    response = Client().get(DASHBOARD)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


# --- Chart helpers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (7, [0, 2, 4, 6, 8]),
        (130, [0, 50, 100, 150]),
        (1_370, [0, 500, 1_000, 1_500]),
    ],
)
def test_nice_ticks__round_steps_that_cover_the_maximum(maximum: int, ticks: list[int]) -> None:
    assert dashboard.nice_ticks(maximum) == ticks


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(0.4, "0 s"), (42, "42 s"), (425, "7 min 5 s"), (12_000, "3 h 20 min"), (187_200, "2 d 4 h")],
)
def test_duration_words(seconds: float, words: str) -> None:
    assert dashboard.duration_words(seconds) == words


def test_throughput_chart__stacks_failed_above_succeeded_within_the_plot() -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    width = timedelta(minutes=5)
    series = [
        stats.ThroughputBucket(start + width * i, start + width * (i + 1), succeeded, failed)
        for i, (succeeded, failed) in enumerate([(3, 1), (0, 0), (8, 0)])
    ]

    chart = dashboard.throughput_chart(series, dashboard.PERIODS["hour"])

    first, empty, full = chart.bars
    assert [tick.label for tick in chart.y_ticks] == ["0", "2", "4", "6", "8"]
    # the failed part sits on top of the succeeded one; the tallest bar reaches the top tick
    assert first.failed_y + first.failed_height == pytest.approx(first.succeeded_y)
    assert first.succeeded_y + first.succeeded_height == pytest.approx(chart.plot_bottom)
    assert full.succeeded_y == pytest.approx(chart.plot_top)
    assert (empty.succeeded_height, empty.failed_height) == (0, 0)
    assert "3 succeeded, 1 failed" in first.title
