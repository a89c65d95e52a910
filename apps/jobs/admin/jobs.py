"""The job ledger in the admin: the list operators search, the job page, and their actions."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import ngettext

from apps.jobs import selectors, services
from apps.jobs.admin import operations
from apps.jobs.admin.display import folded, pretty_json, progress_bar, status_badge
from apps.jobs.admin.filters import ActorFilter, QueueFilter
from apps.jobs.admin.paginator import EstimatedCountPaginator
from apps.jobs.models import Job, JobAttempt, JobEvent

#: A search term that may be (the start of) a job id: hex digits and dashes.
ID_PREFIX = re.compile(r"[0-9a-fA-F-]{4,36}")


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
        "duration_ms",
        "redelivered",
        "error",
    )

    @admin.display(description="error")
    def error(self, attempt: JobAttempt) -> str:
        if not attempt.error_class and not attempt.error_message:
            return "-"
        summary = f"{attempt.error_class}: {attempt.error_message}"[:300]
        if not attempt.traceback:
            return summary
        return format_html(
            "<details class='job-fold'><summary>{}</summary><pre class='job-pre'>{}</pre></details>",
            summary,
            attempt.traceback,
        )


class JobEventInline(ReadOnlyInline):
    model = JobEvent
    fields = readonly_fields = ("at", "from_status", "to_status", "attempt", "note")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "short_id",
        "actor",
        "queue",
        "status_display",
        "progress_column",
        "attempts_display",
        "created_at",
        "duration_display",
        "requested_by",
    ]
    list_display_links = ["short_id"]
    # Choices from the code, never a DISTINCT over the ledger; dates without date_hierarchy's queries.
    list_filter = ["status", ActorFilter, QueueFilter, "source", "created_at"]
    search_help_text = (
        "A job id or its first characters, an actor, an idempotency key, or words of the error of a "
        "failed or retrying job."
    )
    search_fields = ["actor_name"]  # shows the search box; get_search_results does the searching
    list_select_related = ["requested_by"]
    list_per_page = 50
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    # Counts per filter choice are a GROUP BY over the ledger each: never on a large one.
    show_facets = admin.ShowFacets.NEVER
    ordering = ["-created_at"]
    inlines = [JobAttemptInline, JobEventInline]
    change_form_template = "admin/jobs/job/change_form.html"
    change_list_template = "admin/jobs/job/change_list.html"
    actions = ["retry_selected", "cancel_selected", "delete_selected"]
    fieldsets = [
        (
            "Summary",
            {
                "classes": ["job-summary"],
                "fields": [
                    "status_display",
                    "actor_name",
                    "queue_name",
                    "attempts_display",
                    "progress_display",
                    "timings",
                    "error_display",
                    "related_links",
                    "requested_by",
                    "source",
                ],
            },
        ),
        ("Arguments", {"fields": ["args_display", "kwargs_display", "options_display"]}),
        ("Result", {"fields": ["result_display", "traceback_display"]}),
        (
            "Details",
            {
                "classes": ["collapse"],
                "fields": [
                    "id",
                    "priority",
                    "idempotency_key",
                    "unique_key",
                    "created_at",
                    "scheduled_at",
                    "enqueued_at",
                    "started_at",
                    "heartbeat_at",
                    "next_retry_at",
                    "finished_at",
                    "updated_at",
                ],
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

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        """Searches that use indexes on a large ledger: an id by its leading characters (a range of
        the primary key), an actor or idempotency key exactly, and error text among the failed and
        retrying jobs only (a small part of the ledger)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        digits = term.replace("-", "").lower()
        if ID_PREFIX.fullmatch(term) and len(digits) <= 32 and all(c in "0123456789abcdef" for c in digits):
            # Looks like an id: its leading characters are a range of the primary key's index.
            low, high = digits.ljust(32, "0"), digits.ljust(32, "f")
            condition = Q(pk__gte=uuid.UUID(low), pk__lte=uuid.UUID(high)) | Q(idempotency_key=term)
        else:
            condition = (
                Q(actor_name=term)
                | Q(actor_name=f"jobs.{term}")
                | Q(idempotency_key=term)
                | Q(status__in=(Job.Status.FAILED, Job.Status.RETRYING), last_error__icontains=term)
            )
        return queryset.filter(condition), False

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> list[str]:
        return [
            name
            for _, options in self.fieldsets
            for field in options["fields"]
            for name in ([field] if isinstance(field, str) else field)
        ]

    def get_urls(self) -> list[URLPattern]:
        own = operations.job_urls(self)
        return [*own, *super().get_urls()]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # The page shows a job; it is changed only through the actions, each with its permission.
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.retry_job")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.cancel_job")

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # An active job deleted here comes back, its attempts reset, when its message arrives.
        if obj is not None and obj.status in Job.ACTIVE_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        # Narrowed again when deleting: a job may have been retried since the confirmation page.
        super().delete_queryset(request, queryset.exclude(status__in=Job.ACTIVE_STATUSES))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {
            **(extra_context or {}),
            "can_retry": self.has_retry_permission(request),
            "can_cancel": self.has_cancel_permission(request),
            "retryable": services.operations.RETRYABLE,
            "cancellable": (Job.Status.PENDING, Job.Status.QUEUED, Job.Status.RETRYING),
        }
        return super().change_view(request, object_id, form_url, context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "can_delete_finished": self.has_delete_permission(request)}
        return super().changelist_view(request, context)

    # --- Actions -------------------------------------------------------------------------------

    @admin.action(description="Retry selected failed or cancelled jobs", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> TemplateResponse | None:
        return self._bulk(request, queryset, "retry")

    @admin.action(description="Cancel selected waiting jobs", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> TemplateResponse | None:
        return self._bulk(request, queryset, "cancel")

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Job], verb: str) -> TemplateResponse | None:
        """Retry or cancel the jobs; every job matching the filter ("select all") only once confirmed."""
        if request.POST.get("select_across") == "1" and request.POST.get("confirmed") != "yes":
            return TemplateResponse(
                request,
                "admin/jobs/job/bulk_confirmation.html",
                {
                    **self.admin_site.each_context(request),
                    "title": f"{verb.capitalize()} every matching job?",
                    "verb": verb,
                    "count": queryset.count(),
                    "action": request.POST.get("action"),
                    "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
                    "opts": self.model._meta,
                    "action_checkbox_name": ACTION_CHECKBOX_NAME,
                },
            )
        ids = list(queryset.values_list("pk", flat=True))
        operations.apply_bulk(self, request, verb, ids)
        return None

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

    # --- Columns and fields --------------------------------------------------------------------

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
        if job.progress_message and job.progress_percent is not None:
            return format_html("{} {}", progress_bar(job), job.progress_message)
        return progress_bar(job)

    @admin.display(description="queue", ordering="queue_name")
    def queue(self, job: Job) -> str:
        return job.queue_name

    @admin.display(description="progress")
    def progress_column(self, job: Job) -> str:
        """The bar alone (its message in the tooltip): the list stays one line per job."""
        return progress_bar(job)

    @admin.display(description="duration")
    def duration_display(self, job: Job) -> str:
        return f"{job.duration.total_seconds():.2f} s" if job.duration else "-"

    @admin.display(description="times")
    def timings(self, job: Job) -> str:
        parts = [("created", job.created_at), ("started", job.started_at), ("finished", job.finished_at)]
        if job.next_retry_at and job.status == Job.Status.RETRYING:
            parts.append(("next attempt", job.next_retry_at))
        shown = format_html_join(
            " · ", "{}: {}", ((name, f"{at:%Y-%m-%d %H:%M:%S}") for name, at in parts if at)
        )
        duration = self.duration_display(job)
        return format_html("{} · took {}", shown, duration) if job.duration else shown

    @admin.display(description="error")
    def error_display(self, job: Job) -> str:
        return folded(job.last_error) if job.last_error else "-"

    @admin.display(description="traceback")
    def traceback_display(self, job: Job) -> str:
        return (
            folded(job.last_traceback, summary="Traceback of the last failed attempt")
            if job.last_traceback
            else "-"
        )

    @admin.display(description="related")
    def related_links(self, job: Job) -> str:
        links = []
        if job.trigger_content_type_id:
            links.append(format_html("triggered by {}", self.trigger_link(job)))
        if job.retry_of_id:
            url = reverse("admin:jobs_job_change", args=[job.retry_of_id])
            links.append(format_html('retries <a href="{}">job {}</a>', url, str(job.retry_of_id)[:8]))
        for retry_id, status in job.retries.order_by("created_at").values_list("pk", "status"):
            url = reverse("admin:jobs_job_change", args=[retry_id])
            links.append(
                format_html(
                    'retried as <a href="{}">job {}</a> {}',
                    url,
                    str(retry_id)[:8],
                    status_badge(status, status),
                )
            )
        return format_html_join(mark_safe("<br>"), "{}", ((link,) for link in links)) if links else "-"

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
        return pretty_json(job.result) if job.result is not None else "-"
