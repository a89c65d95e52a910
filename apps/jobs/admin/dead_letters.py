"""Console pages: dead letters. Each queue's .XQ, its messages, and requeue / purge, as Sidekiq's "Dead" tab.

Seeing the pages needs jobs.view_job; requeueing needs jobs.requeue_dead_letters, purging
jobs.purge_dead_letters. Every change is a CSRF-protected POST (admin_view adds csrf_protect), and
requeue-all and purge first show a confirmation page with the count. Message data (arguments,
errors, raw bodies) reaches the templates as plain values and is autoescaped there: nothing a
message carries can render as HTML.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.jobs.admin.display import status_badge
from apps.jobs.exceptions import BrokerUnavailable
from apps.jobs.models import Job
from apps.jobs.queues import queue_names
from apps.jobs.services import dead_letters

VIEW_PERMISSION = "jobs.view_job"
REQUEUE_PERMISSION = "jobs.requeue_dead_letters"
PURGE_PERMISSION = "jobs.purge_dead_letters"
#: Messages shown on a queue's page (and taken off .XQ for a moment to read them).
PAGE_SIZE = 100
#: Characters of compact JSON shown in a table cell; the full value is in the cell's title.
JSON_CELL_CHARS = 200
#: Skipped messages named one by one in the requeue-all report; the rest are counted.
SKIPPED_SHOWN = 5


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


def _operator(request: HttpRequest) -> AbstractBaseUser | None:
    """The signed-in user the actions are recorded for (admin_view lets no one else in)."""
    return request.user if request.user.is_authenticated else None


def _queue_or_404(queue: str) -> str:
    if queue not in queue_names():
        raise Http404(f"No queue named {queue!r}.")
    return queue


def _context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    """The admin's own context (header, sidebar, theme) plus the page's."""
    return {**admin.site.each_context(request), "title": title, **extra}


def _queue_url(queue: str) -> str:
    return reverse("console:dead-letters-queue", args=[queue])


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _row(letter: dead_letters.DeadLetter) -> dict[str, Any]:
    """What the table shows of one message: plain strings the template escapes (the badge is ours)."""
    args, kwargs = _compact(letter.args), _compact(letter.kwargs)
    attempts = letter.job_attempts if letter.job_attempts is not None else letter.retries
    return {
        "letter": letter,
        "job_url": reverse("admin:jobs_job_change", args=[letter.message_id]) if letter.job_exists else "",
        "args": args,
        "args_short": args if len(args) <= JSON_CELL_CHARS else args[:JSON_CELL_CHARS] + "…",
        "kwargs": kwargs,
        "kwargs_short": kwargs if len(kwargs) <= JSON_CELL_CHARS else kwargs[:JSON_CELL_CHARS] + "…",
        "attempts": attempts,
        # status_badge goes through format_html; the label is one of Job.Status's own.
        "status_badge": status_badge(letter.job_status, Job.Status(letter.job_status).label)
        if letter.job_status in Job.Status.values
        else "",
    }


@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """Every queue with its dead-letter count, each linking to its page."""
    _require(request, VIEW_PERMISSION)
    counts: dict[str, int] | None
    try:
        counts = dead_letters.dead_letter_counts()
    except BrokerUnavailable as exc:
        messages.error(request, f"RabbitMQ is unreachable; the counts are unknown. ({exc.message})")
        counts = None
    rows = [
        {"name": name, "count": None if counts is None else counts.get(name, 0), "url": _queue_url(name)}
        for name in queue_names()
    ]
    return TemplateResponse(
        request,
        "admin/jobs/console/dead_letters.html",
        _context(
            request,
            "Dead letters",
            queues=rows,
            total=None if counts is None else sum(counts.values()),
        ),
        status=200 if counts is not None else 503,
    )


@require_GET
def queue_page(request: HttpRequest, queue: str) -> HttpResponse:
    """The first PAGE_SIZE messages of the queue's .XQ, each with a Requeue button; the queue's actions."""
    _require(request, VIEW_PERMISSION)
    queue = _queue_or_404(queue)
    unavailable = False
    rows: list[dict[str, Any]] = []
    count = 0
    try:
        rows = [_row(letter) for letter in dead_letters.dead_letters_peek(queue=queue, limit=PAGE_SIZE)]
        count = dead_letters.dead_letter_counts().get(queue, 0)
    except BrokerUnavailable as exc:
        messages.error(request, f"RabbitMQ is unreachable; the dead letters cannot be read. ({exc.message})")
        unavailable = True
    return TemplateResponse(
        request,
        "admin/jobs/console/dead_letters_queue.html",
        _context(
            request,
            f"Dead letters of {queue}",
            queue=queue,
            rows=rows,
            # The count is read after the peek handed the messages back, so it can lag or lead a little.
            count=max(count, len(rows)),
            unavailable=unavailable,
            page_size=PAGE_SIZE,
            can_requeue=request.user.has_perm(REQUEUE_PERMISSION),
            can_purge=request.user.has_perm(PURGE_PERMISSION),
        ),
        status=503 if unavailable else 200,
    )


@require_POST
def requeue(request: HttpRequest, queue: str) -> HttpResponse:
    """Requeue one message (POST message_id): a new retry job, then the message leaves .XQ."""
    _require(request, REQUEUE_PERMISSION)
    queue = _queue_or_404(queue)
    message_id = request.POST.get("message_id", "").strip()
    if not message_id:
        messages.error(request, "No message was chosen.")
        return HttpResponseRedirect(_queue_url(queue))
    try:
        retry = dead_letters.dead_letter_requeue(
            queue=queue, message_id=message_id, requested_by=_operator(request)
        )
    except (dead_letters.DeadLetterNotFound, dead_letters.DeadLetterNotRequeued) as exc:
        messages.error(request, f"Message {message_id} was not requeued: {exc.message}")
    except BrokerUnavailable as exc:
        messages.error(request, f"RabbitMQ is unreachable; nothing was requeued. ({exc.message})")
    else:
        messages.success(request, f"Requeued message {message_id}: it runs again as job {retry.pk}.")
    return HttpResponseRedirect(_queue_url(queue))


def _confirmed_action(
    *,
    permission: str,
    action: str,
    explanation: str,
    destructive: bool,
    perform: Callable[[HttpRequest, str], None],
) -> Callable[[HttpRequest, str], HttpResponse]:
    """A view showing a confirmation page with the message count on GET and doing `perform` on POST."""

    @require_http_methods(["GET", "POST"])
    def view(request: HttpRequest, queue: str) -> HttpResponse:
        _require(request, permission)
        queue = _queue_or_404(queue)
        if request.method == "POST":
            try:
                perform(request, queue)
            except BrokerUnavailable as exc:
                messages.error(request, f"RabbitMQ is unreachable; nothing was done. ({exc.message})")
            return HttpResponseRedirect(_queue_url(queue))
        try:
            count: int | None = dead_letters.dead_letter_counts().get(queue, 0)
        except BrokerUnavailable as exc:
            messages.error(request, f"RabbitMQ is unreachable; the count is unknown. ({exc.message})")
            count = None
        return TemplateResponse(
            request,
            "admin/jobs/console/dead_letters_confirm.html",
            _context(
                request,
                f"{action} the dead letters of {queue}?",
                queue=queue,
                count=count,
                action=action,
                explanation=explanation,
                destructive=destructive,
                queue_url=_queue_url(queue),
            ),
        )

    return view


def _requeue_all(request: HttpRequest, queue: str) -> None:
    report = dead_letters.dead_letters_requeue_all(queue=queue, requested_by=_operator(request))
    requeued, skipped = len(report.requeued), len(report.skipped)
    text = ngettext("Requeued %(count)d message", "Requeued %(count)d messages", requeued) % {
        "count": requeued
    }
    if skipped:
        reasons = "; ".join(
            f"{message_id or 'an undecodable message'}: {reason.rstrip('.')}"
            for message_id, reason in report.skipped[:SKIPPED_SHOWN]
        )
        more = f"; and {skipped - SKIPPED_SHOWN} more" if skipped > SKIPPED_SHOWN else ""
        text += f"; skipped {skipped} (left in {queue}.XQ): {reasons}{more}"
    if report.remaining:
        text += f". {report.remaining} more wait in {queue}.XQ: requeue all again for them"
    level = messages.SUCCESS if not skipped else messages.WARNING if requeued else messages.ERROR
    messages.add_message(request, level, text + ".")


def _purge(request: HttpRequest, queue: str) -> None:
    purged = dead_letters.dead_letters_purge(queue=queue, requested_by=_operator(request))
    messages.success(
        request,
        ngettext(
            "Purged %(count)d message from %(queue)s.XQ; its job stays failed.",
            "Purged %(count)d messages from %(queue)s.XQ; their jobs stay failed.",
            purged,
        )
        % {"count": purged, "queue": queue},
    )


requeue_all = _confirmed_action(
    permission=REQUEUE_PERMISSION,
    action="Requeue",
    explanation="Each message's job runs again as a new job with a fresh retry budget; messages that "
    "cannot be requeued (already being retried, not in the ledger) stay in the dead-letter queue.",
    destructive=False,
    perform=_requeue_all,
)
purge = _confirmed_action(
    permission=PURGE_PERMISSION,
    action="Purge",
    explanation="The messages are dropped for good; their jobs stay failed in the ledger and can still "
    "be retried from their own pages.",
    destructive=True,
    perform=_purge,
)

urlpatterns: list[URLPattern] = [
    path("dead-letters/", admin.site.admin_view(overview), name="dead-letters"),
    path("dead-letters/<str:queue>/", admin.site.admin_view(queue_page), name="dead-letters-queue"),
    path("dead-letters/<str:queue>/requeue/", admin.site.admin_view(requeue), name="dead-letters-requeue"),
    path(
        "dead-letters/<str:queue>/requeue-all/",
        admin.site.admin_view(requeue_all),
        name="dead-letters-requeue-all",
    ),
    path("dead-letters/<str:queue>/purge/", admin.site.admin_view(purge), name="dead-letters-purge"),
]
