"""Console page: the worker processes, as their heartbeats describe them, dead or stuck ones first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from apps.jobs.services import workers as worker_services
from apps.jobs.services.workers import State

#: Seconds between the page's automatic reloads.
REFRESH_S = 10


@dataclass(frozen=True)
class WorkerRow:
    """One worker as the table shows it; every text is escaped by the template."""

    host: str
    pid: int
    queues: str
    threads: int
    started_at: datetime
    up_for: str
    last_seen_at: datetime
    seen_ago: str
    jobs_in_progress: int
    state: str
    stopped_at: datetime | None


def duration(value: timedelta | None) -> str:
    """A short human duration: "12 s", "5 min 3 s", "2 h 5 min", "3 d 4 h"."""
    if value is None:
        return "-"
    seconds = max(int(value.total_seconds()), 0)
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


def workers_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not (user.has_perm("jobs.view_worker") or user.has_perm("jobs.view_job")):
        raise PermissionDenied
    show_all = request.GET.get("all") == "1"
    rows = [
        WorkerRow(
            host=worker.host,
            pid=worker.pid,
            queues=", ".join(str(queue) for queue in worker.queues or []),
            threads=worker.threads,
            started_at=worker.started_at,
            up_for=duration(worker.up_for),
            last_seen_at=worker.last_seen_at,
            seen_ago=duration(worker.seen_ago),
            jobs_in_progress=worker.jobs_in_progress,
            state=worker.state,
            stopped_at=worker.stopped_at,
        )
        for worker in worker_services.workers_list(include_old_stopped=show_all)
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Workers",
        "rows": rows,
        "counts": {state: sum(row.state == state for row in rows) for state in State.ALL},
        "show_all": show_all,
        "lease_s": settings.JOBS_LEASE_S,
        "refresh_s": REFRESH_S,
        "running_jobs_url": reverse("admin:jobs_job_changelist") + "?status__exact=running",
    }
    return TemplateResponse(request, "admin/jobs/console/workers.html", context)


urlpatterns: list[URLPattern] = [
    path("workers/", admin.site.admin_view(workers_view), name="workers"),
]
