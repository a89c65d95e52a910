"""The admin of the example workloads: reports (add one to start its job), batch results, synced records."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.jobs.admin import TriggeredJobsMixin, status_badge
from apps.workloads import selectors
from apps.workloads.models import BatchItemResult, ExternalRecord, Report


@admin.register(Report)
class ReportAdmin(TriggeredJobsMixin, admin.ModelAdmin):
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Report]:
        # Each row shows its job's status: read the jobs in the same query, not one query per row.
        return selectors.report_list()

    def save_model(self, request: HttpRequest, obj: Report, form: object, change: bool) -> None:
        user = request.user
        if not change and user.is_authenticated:  # the admin serves staff only: always so
            obj.created_by = user
        super().save_model(request, obj, form, change)

    def get_readonly_fields(self, request: HttpRequest, obj: Report | None = None) -> list[str]:
        # A report is built once from what it was created with.
        return [*self.readonly_fields, "type", "filters"] if obj else self.readonly_fields

    @admin.display(description="job")
    def job_status(self, report: Report) -> str:
        return status_badge(report.job.status, report.job.get_status_display()) if report.job else "-"

    @admin.display(description="job")
    def job_link(self, report: Report) -> str:
        job = report.job
        if job is None:
            return "-"
        url = reverse("admin:jobs_job_change", args=[job.pk])
        return format_html(
            '<a href="{}">{}</a> {}',
            url,
            job.pk,
            status_badge(job.status, job.get_status_display()),
        )

    @admin.display(description="file")
    def download(self, report: Report) -> str:
        if not report.file:
            return "-"
        url = reverse("workloads:report-download", args=[report.pk])
        return format_html('<a href="{}">Download CSV</a>', url)


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
