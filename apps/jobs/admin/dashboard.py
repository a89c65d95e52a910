"""Console page: the dashboard. Queues now, then throughput, failure rate and durations per actor over
the last hour or day.

The charts are inline SVG drawn by the template from the geometry computed here: no JavaScript library
and no CDN, so the page works offline and behind strict CSPs, and every text in them (actor names) goes
through the template's autoescaping like the rest of the page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone

from apps.jobs import queues, stats
from apps.jobs.exceptions import BrokerUnavailable
from apps.jobs.models import Job

TEMPLATE = "admin/jobs/console/dashboard.html"
#: Seconds between the page's own reloads (a <meta http-equiv="refresh">).
REFRESH_S = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    length: timedelta
    buckets: int
    #: Label every n-th bucket on the time axis, so the labels do not overlap.
    label_every: int


PERIODS = {
    "hour": Period("hour", "Last hour", timedelta(hours=1), buckets=12, label_every=2),
    "day": Period("day", "Last day", timedelta(days=1), buckets=24, label_every=3),
}
DEFAULT_PERIOD = "hour"


# --- The throughput chart ------------------------------------------------------------------------------

#: The chart's drawing box (SVG user units); the SVG scales to the page's width.
CHART_WIDTH, CHART_HEIGHT = 720, 240
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 56, 708, 28, 204


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    #: The succeeded part (bottom of the stack) and the failed part above it.
    succeeded_y: float
    succeeded_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class ThroughputChart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    total_succeeded: int
    total_failed: int
    #: Text alternative of the chart for screen readers.
    description: str

    @property
    def plot_height(self) -> int:
        return self.plot_bottom - self.plot_top

    @property
    def plot_middle(self) -> float:
        return (self.plot_top + self.plot_bottom) / 2


def nice_ticks(maximum: int, count: int = 4) -> list[int]:
    """Round tick values 0..top with top >= maximum, in steps of 1, 2 or 5 times a power of ten."""
    if maximum <= 0:
        return [0, 1]
    raw_step = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
    step = max(int(step), 1)
    top = step * math.ceil(maximum / step)
    return list(range(0, top + 1, step))


def _local_time(moment: datetime, period: Period) -> str:
    local = timezone.localtime(moment)
    return local.strftime("%H:%M") if period.length <= timedelta(hours=1) else local.strftime("%a %H:%M")


def throughput_chart(series: list[stats.ThroughputBucket], period: Period) -> ThroughputChart:
    """The stacked bars (succeeded below, failed above) of `series`, scaled into the plot box."""
    ticks = nice_ticks(max((bucket.finished for bucket in series), default=0))
    top = ticks[-1]
    plot_height = PLOT_BOTTOM - PLOT_TOP
    slot = (PLOT_RIGHT - PLOT_LEFT) / max(len(series), 1)

    def y(value: int) -> float:
        return round(PLOT_BOTTOM - plot_height * value / top, 2)

    bars = []
    x_ticks = []
    for index, bucket in enumerate(series):
        x = PLOT_LEFT + slot * index
        start, end = _local_time(bucket.start, period), _local_time(bucket.end, period)
        bars.append(
            Bar(
                x=round(x + slot * 0.15, 2),
                width=round(slot * 0.7, 2),
                succeeded_y=y(bucket.succeeded),
                succeeded_height=round(PLOT_BOTTOM - y(bucket.succeeded), 2),
                failed_y=y(bucket.finished),
                failed_height=round(y(bucket.succeeded) - y(bucket.finished), 2),
                title=f"{start}-{end}: {bucket.succeeded} succeeded, {bucket.failed} failed",
            )
        )
        if index % period.label_every == 0:
            x_ticks.append(Tick(position=round(x, 2), label=start))
    total_succeeded = sum(bucket.succeeded for bucket in series)
    total_failed = sum(bucket.failed for bucket in series)
    return ThroughputChart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        plot_left=PLOT_LEFT,
        plot_right=PLOT_RIGHT,
        plot_top=PLOT_TOP,
        plot_bottom=PLOT_BOTTOM,
        bars=bars,
        y_ticks=[Tick(position=y(value), label=f"{value:,}") for value in ticks],
        x_ticks=x_ticks,
        total_succeeded=total_succeeded,
        total_failed=total_failed,
        description=(
            f"Jobs finished per {_bucket_words(period)}: {total_succeeded} succeeded, {total_failed} failed."
        ),
    )


def _bucket_words(period: Period) -> str:
    minutes = int(period.length.total_seconds() // 60 // period.buckets)
    return f"{minutes} minutes" if minutes < 60 else f"{minutes // 60} hour" + ("s" if minutes > 60 else "")


# --- The per-actor table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActorRow:
    stats: stats.ActorStats
    jobs_url: str
    failed_url: str
    #: Bar lengths in percent of the column's scale: the busiest actor, FAILURE_SCALE, the slowest p95.
    throughput_bar: float
    failure_bar: float
    p50_bar: float
    p95_bar: float

    @property
    def failure_percent(self) -> float:
        return self.stats.failure_rate * 100


def failure_scale(actors: list[stats.ActorStats]) -> float:
    """The failure rate a full bar stands for: at least 10 %, so a few failures do not look like a
    disaster, else the highest rate rounded up to 10 %, so the actors' bars stay comparable."""
    highest = max((actor.failure_rate for actor in actors), default=0.0)
    return max(0.1, math.ceil(highest * 10) / 10)


def actor_rows(actors: list[stats.ActorStats]) -> list[ActorRow]:
    """The table's rows, busiest actor first, with their links and bar lengths."""
    changelist = reverse("admin:jobs_job_changelist")

    def jobs_url(**filters: str) -> str:
        return f"{changelist}?{urlencode(filters)}"

    most_throughput = max((actor.throughput_per_min for actor in actors), default=0.0) or 1.0
    slowest = max((actor.p95_ms or 0.0 for actor in actors), default=0.0) or 1.0
    failures = failure_scale(actors)
    rows = []
    for actor in sorted(actors, key=lambda actor: (-actor.finished, actor.actor_name)):
        rows.append(
            ActorRow(
                stats=actor,
                jobs_url=jobs_url(actor_name=actor.actor_name),
                failed_url=jobs_url(actor_name=actor.actor_name, status__exact=Job.Status.FAILED),
                throughput_bar=round(100 * actor.throughput_per_min / most_throughput, 1),
                failure_bar=round(100 * actor.failure_rate / failures, 1),
                p50_bar=round(100 * (actor.p50_ms or 0.0) / slowest, 1),
                p95_bar=round(100 * (actor.p95_ms or 0.0) / slowest, 1),
            )
        )
    return rows


# --- The queues table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRow:
    name: str
    #: None: RabbitMQ did not say (unreachable, or it does not have the queue yet).
    ready: int | None
    delayed: int | None
    dead: int | None
    consumers: int | None
    running: int
    #: Seconds the oldest waiting job has been due, None when none waits.
    oldest_waiting_s: float | None
    dead_letters_url: str | None

    @property
    def oldest_waiting(self) -> str:
        return "" if self.oldest_waiting_s is None else duration_words(self.oldest_waiting_s)


def duration_words(seconds: float) -> str:
    """A wait as operators read it: 42 s, 7 min 5 s, 3 h 20 min, 2 d 4 h."""
    whole = int(seconds)
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60)):
        if whole >= size:
            return f"{whole // size} {unit} {whole % size // smaller_size} {smaller}"
    if whole >= 60:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole} s"


def _dead_letters_url(queue: str) -> str | None:
    # The dead letters page is written beside this one and may not have its per-queue view yet.
    try:
        return reverse("console:dead-letters-queue", kwargs={"queue": queue})
    except NoReverseMatch:
        return None


def queue_rows(now: datetime) -> tuple[list[QueueRow], str]:
    """The queues and an error message: RabbitMQ's counts when it answers, else only the ledger's."""
    oldest = stats.oldest_waiting_per_queue(now=now)

    def waited(name: str) -> float | None:
        return max((now - oldest[name]).total_seconds(), 0.0) if name in oldest else None

    try:
        depths = queues.queue_depths()
    except BrokerUnavailable as exc:
        running = stats.running_per_queue()
        names = sorted({*queues.queue_names(), *running})
        rows = [
            QueueRow(
                name, None, None, None, None, running.get(name, 0), waited(name), _dead_letters_url(name)
            )
            for name in names
        ]
        return rows, str(exc)
    rows = [
        QueueRow(
            name=depth.name,
            ready=depth.ready,
            delayed=depth.delayed,
            dead=depth.dead,
            consumers=depth.consumers,
            running=depth.running,
            oldest_waiting_s=waited(depth.name),
            dead_letters_url=_dead_letters_url(depth.name),
        )
        for depth in depths
    ]
    return rows, ""


# --- The page ------------------------------------------------------------------------------------------


def chart_window(now: datetime, period: Period) -> tuple[datetime, datetime]:
    """The period's buckets aligned on round times (5-minute, hour boundaries), the last one holding now:
    its axis reads 14:05, 14:10 rather than 14:07:23, and the page shows the same buckets between reloads.
    """
    width = period.length / period.buckets
    end = _EPOCH + width * math.ceil((now - _EPOCH) / width)
    return end - period.length, end


def dashboard(request: HttpRequest) -> HttpResponse:
    """Queues, throughput and per-actor figures, for users who may see every job (jobs.view_job)."""
    if not request.user.has_perm("jobs.view_job"):
        raise PermissionDenied
    period = PERIODS.get(request.GET.get("period", ""), PERIODS[DEFAULT_PERIOD])
    now = timezone.now()
    since, end = chart_window(now, period)
    queue_list, broker_error = queue_rows(now)
    series = stats.throughput_series(since=since, buckets=period.buckets, until=end)
    # The table covers the chart's window up to now, so its totals are the chart's.
    actors = stats.actor_stats(since=since, until=now)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "refresh_s": REFRESH_S,
        "now": now,
        "since": since,
        "periods": PERIODS.values(),
        "period": period,
        "queues": queue_list,
        "broker_error": broker_error,
        "chart": throughput_chart(series, period),
        "actors": actor_rows(actors),
        "failure_scale_percent": failure_scale(actors) * 100,
        "jobs_url": reverse("admin:jobs_job_changelist"),
        "last_finished_at": Job.objects.aggregate(last=Max("finished_at"))["last"],
    }
    return TemplateResponse(request, TEMPLATE, context)


urlpatterns: list[URLPattern] = [
    path("dashboard/", admin.site.admin_view(dashboard), name="dashboard"),
]
