"""The admin: the job ledger, read-only, with attempts and status history."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import ngettext

from apps.jobs import selectors
from apps.jobs.models import Job, JobAttempt, JobEvent

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


def pretty_json(value: object) -> str:
    return format_html("<pre style='white-space:pre-wrap;margin:0'>{}</pre>", json.dumps(value, indent=2))


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class JobAttemptInline(ReadOnlyInline):
    model = JobAttempt
    fields = readonly_fields = (
        "number",
        "outcome",
        "worker_host",
        "worker_pid",
        "started_at",
        "finished_at",
        "duration_ms",
        "redelivered",
        "error_class",
        "error_message",
    )


class JobEventInline(ReadOnlyInline):
    model = JobEvent
    fields = readonly_fields = ("at", "from_status", "to_status", "attempt", "note")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "short_id",
        "actor",
        "queue_name",
        "status_display",
        "attempts_display",
        "progress_display",
        "source",
        "created_at",
        "duration_display",
    ]
    list_filter = ["status", "queue_name", "actor_name", "source"]
    search_fields = ["=id", "actor_name", "idempotency_key", "=trigger_object_id"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False
    inlines = [JobAttemptInline, JobEventInline]
    #: Replaces the admin site's delete action with one that leaves active jobs alone.
    actions = ["delete_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "actor_name",
                    "queue_name",
                    "status_display",
                    "attempts_display",
                    "priority",
                    "source",
                    "requested_by",
                    "trigger_link",
                    "idempotency_key",
                    "unique_key",
                ]
            },
        ),
        ("Arguments", {"fields": ["args_display", "kwargs_display", "options_display"]}),
        (
            "Progress and outcome",
            {
                "fields": [
                    "progress_display",
                    "progress_message",
                    "result_display",
                    "last_error",
                    "last_traceback",
                ]
            },
        ),
        (
            "Times",
            {
                "fields": [
                    "created_at",
                    "scheduled_at",
                    "enqueued_at",
                    "started_at",
                    "heartbeat_at",
                    "next_retry_at",
                    "finished_at",
                    "updated_at",
                ]
            },
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        match = request.resolver_match
        return (
            selectors.job_list()
            if match is not None and (match.url_name or "").endswith("changelist")
            else (super().get_queryset(request))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> list[str]:
        return [
            name
            for _, options in self.fieldsets
            for field in options["fields"]
            for name in ([field] if isinstance(field, str) else field)
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # Read-only: the view permission opens the page, nothing on it can be edited.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # An active job deleted here comes back, its attempts reset, when its message arrives.
        if obj is not None and obj.status in Job.ACTIVE_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        # Narrowed again when deleting: a job may have been retried since the confirmation page.
        super().delete_queryset(request, queryset.exclude(status__in=Job.ACTIVE_STATUSES))

    @admin.action(description="Delete selected finished jobs", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> TemplateResponse | None:
        """Django's delete action (confirmation page included) for the finished jobs; skips active ones."""
        active = queryset.filter(status__in=Job.ACTIVE_STATUSES).count()
        finished = queryset.exclude(status__in=Job.ACTIVE_STATUSES)
        if active:
            self.message_user(
                request,
                ngettext(
                    "%(count)d active job was not deleted (pending, queued, running or retrying): "
                    "cancel it or let it finish first.",
                    "%(count)d active jobs were not deleted (pending, queued, running or retrying): "
                    "cancel them or let them finish first.",
                    active,
                )
                % {"count": active},
                messages.WARNING if finished.exists() else messages.ERROR,
            )
        if not finished.exists():
            return None
        return django_delete_selected(self, request, finished)

    @admin.display(description="id", ordering="id")
    def short_id(self, job: Job) -> str:
        return str(job.pk)[:8]

    @admin.display(description="actor", ordering="actor_name")
    def actor(self, job: Job) -> str:
        return job.actor_name.removeprefix("jobs.")

    @admin.display(description="status", ordering="status")
    def status_display(self, job: Job) -> str:
        return status_badge(job.status, job.get_status_display())

    @admin.display(description="attempts")
    def attempts_display(self, job: Job) -> str:
        shown = f"{job.counted_attempts} / {job.max_retries + 1}"
        if job.interruptions:
            shown += f" (+{job.interruptions} interrupted by shutdown)"
        return shown

    @admin.display(description="progress")
    def progress_display(self, job: Job) -> str:
        percent = job.progress_percent
        if percent is None:
            return "-" if job.progress_current is None else str(job.progress_current)
        return format_html(
            '<progress value="{}" max="100" title="{} of {}"></progress> {}%',
            round(percent),
            job.progress_current,
            job.progress_total,
            round(percent),
        )

    @admin.display(description="duration")
    def duration_display(self, job: Job) -> str:
        return f"{job.duration.total_seconds():.2f} s" if job.duration else "-"

    @admin.display(description="triggered by")
    def trigger_link(self, job: Job) -> str:
        content_type = job.trigger_content_type  # no query when there is no trigger
        if content_type is None:
            return "-"
        label = f"{content_type.name} #{job.trigger_object_id}"
        try:
            url = reverse(
                f"admin:{content_type.app_label}_{content_type.model}_change", args=[job.trigger_object_id]
            )
        except NoReverseMatch:
            # The model has no admin page (never registered, or removed since): name it, unlinked.
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="args")
    def args_display(self, job: Job) -> str:
        return pretty_json(job.args)

    @admin.display(description="kwargs")
    def kwargs_display(self, job: Job) -> str:
        return pretty_json(job.kwargs)

    @admin.display(description="options")
    def options_display(self, job: Job) -> str:
        return pretty_json(job.options)

    @admin.display(description="result")
    def result_display(self, job: Job) -> str:
        return pretty_json(job.result)
