"""How the console shows a job's parts: status badges, JSON, progress. Everything goes through
format_html, so nothing a job carries (arguments, errors, results) can inject HTML or script."""

from __future__ import annotations

import json

from django.utils.html import format_html

from apps.jobs.models import Job

#: Colour of each status badge; a unit test keeps it complete.
STATUS_COLOURS: dict[str, str] = {
    Job.Status.PENDING: "#6c757d",
    Job.Status.QUEUED: "#0d6efd",
    Job.Status.RUNNING: "#6f42c1",
    Job.Status.RETRYING: "#fd7e14",
    Job.Status.SUCCEEDED: "#198754",
    Job.Status.FAILED: "#dc3545",
    Job.Status.CANCELLED: "#495057",
    Job.Status.SKIPPED: "#adb5bd",
}


def status_badge(status: str, label: str) -> str:
    return format_html(
        '<span class="job-status job-status-{}" style="background:{};color:#fff;padding:2px 8px;'
        'border-radius:10px;font-size:11px;white-space:nowrap">{}</span>',
        status,
        STATUS_COLOURS.get(status, "#6c757d"),
        label,
    )


#: Longer text than this many lines is shown folded, its first lines as the summary.
FOLD_LINES = 12


def folded(text: str, *, summary: str = "") -> str:
    """Text in a <pre>, folded into a <details> when it is long (a traceback, a large result)."""
    lines = text.splitlines()
    block = format_html("<pre class='job-pre'>{}</pre>", text)
    if len(lines) <= FOLD_LINES:
        return block
    label = summary or f"{lines[0][:120]} … ({len(lines)} lines)"
    return format_html("<details class='job-fold'><summary>{}</summary>{}</details>", label, block)


def pretty_json(value: object) -> str:
    """Indented JSON, folded when long."""
    return folded(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def progress_bar(job: Job) -> str:
    percent = job.progress_percent
    if percent is None:
        return "-" if job.progress_current is None else str(job.progress_current)
    return format_html(
        '<span class="job-progress-cell" title="{} of {} {}">'
        '<progress class="job-progress" value="{}" max="100"></progress> <span>{}%</span></span>',
        job.progress_current,
        job.progress_total,
        job.progress_message,
        round(percent),
        round(percent),
    )
