"""The admin: the job ledger, read-only, with attempts and status history; reports and synced records."""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from apps.jobs import selectors
from apps.jobs.models import BatchItemResult, ExternalRecord, Job, JobAttempt, JobEvent, Report

#: Colour of each status badge; a unit test keeps it complete.
STATUS_COLOURS = {
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
    fields = [
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
    ]
    readonly_fields = fields


class JobEventInline(ReadOnlyInline):
    model = JobEvent
    fields = ["at", "from_status", "to_status", "attempt", "note"]
    readonly_fields = fields


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

    def get_queryset(self, request: HttpRequest):
        return (
            selectors.job_list()
            if request.resolver_match.url_name.endswith("changelist")
            else (super().get_queryset(request))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> list[str]:
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # Read-only: the view permission opens the page, nothing on it can be edited.
        return False

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
        if not job.trigger_content_type_id:
            return "-"
        content_type = job.trigger_content_type
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


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    list_display = ["__str__", "type", "row_count", "job_status", "created_at", "finished_at", "download"]
    list_filter = ["type"]
    fields = [
        "type",
        "filters",
        "key",
        "download",
        "row_count",
        "job_link",
        "created_by",
        "created_at",
        "finished_at",
    ]
    readonly_fields = ["key", "download", "row_count", "job_link", "created_by", "created_at", "finished_at"]

    def save_model(self, request: HttpRequest, obj: Report, form: object, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_readonly_fields(self, request: HttpRequest, obj: Report | None = None) -> list[str]:
        # A report is built once from what it was created with.
        return [*self.readonly_fields, "type", "filters"] if obj else self.readonly_fields

    @admin.display(description="job")
    def job_status(self, report: Report) -> str:
        return status_badge(report.job.status, report.job.get_status_display()) if report.job else "-"

    @admin.display(description="job")
    def job_link(self, report: Report) -> str:
        if not report.job_id:
            return "-"
        url = reverse("admin:jobs_job_change", args=[report.job_id])
        return format_html(
            '<a href="{}">{}</a> {}',
            url,
            report.job_id,
            status_badge(report.job.status, report.job.get_status_display()),
        )

    @admin.display(description="file")
    def download(self, report: Report) -> str:
        if not report.file:
            return "-"
        return format_html('<a href="{}">Download CSV</a>', reverse("jobs:report-download", args=[report.pk]))


@admin.register(BatchItemResult)
class BatchItemResultAdmin(admin.ModelAdmin):
    list_display = ["job", "index", "outcome", "item", "result", "error"]
    list_filter = ["outcome"]
    search_fields = ["=job__id"]
    list_select_related = ["job"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ExternalRecord)
class ExternalRecordAdmin(admin.ModelAdmin):
    list_display = ["external_id", "first_synced_at", "last_synced_at"]
    search_fields = ["external_id"]
    readonly_fields = ["external_id", "data", "first_synced_at", "last_synced_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
