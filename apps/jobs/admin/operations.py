"""The console's actions on jobs, through the services the REST API uses too.

Each is guarded by its own permission, reports what it changed and what it skipped (and why), and is
written to Django's admin log (audit.py), so each job's History says who did what, and when.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.jobs import services
from apps.jobs.admin.audit import log_job_action
from apps.jobs.admin.forms import DeleteFinishedForm, EditAndRetryForm
from apps.jobs.exceptions import InvalidTransition, JobNotFound, JobsError
from apps.jobs.models import Job

if TYPE_CHECKING:
    from apps.jobs.admin.jobs import JobAdmin

#: How many skipped jobs a message names before it only counts them.
NAMED_SKIPS = 5


def job_urls(model_admin: JobAdmin) -> list[URLPattern]:
    site = model_admin.admin_site

    def view(function: Any, *, post_only: bool = False) -> Any:
        def bound(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            return function(model_admin, request, **kwargs)

        return site.admin_view(require_POST(bound) if post_only else bound)

    return [
        path("delete-finished/", view(delete_finished), name="jobs_job_delete_finished"),
        path("<path:object_id>/retry/", view(retry, post_only=True), name="jobs_job_retry"),
        path("<path:object_id>/cancel/", view(cancel, post_only=True), name="jobs_job_cancel"),
        path("<path:object_id>/edit-and-retry/", view(edit_and_retry), name="jobs_job_edit_and_retry"),
    ]


def _job(model_admin: JobAdmin, request: HttpRequest, object_id: str) -> Job:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    job = model_admin.get_object(request, object_id)
    if job is None:
        raise Http404("No job has this id.")
    return job


def _change_url(job_id: Any) -> str:
    return reverse("admin:jobs_job_change", args=[job_id])


def retry(model_admin: JobAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    if not model_admin.has_retry_permission(request):
        raise PermissionDenied
    job = _job(model_admin, request, object_id)
    try:
        again = services.job_retry(job_id=job.pk, requested_by=request.user)  # type: ignore[arg-type]
    except InvalidTransition as exc:
        model_admin.message_user(request, exc.message, messages.ERROR)
        return HttpResponseRedirect(_change_url(job.pk))
    log_job_action(request, [job], f"Retried ({job.status}) as job {again.pk}.")
    model_admin.message_user(request, f"Job {str(job.pk)[:8]} runs again as this new job.", messages.SUCCESS)
    return HttpResponseRedirect(_change_url(again.pk))


def cancel(model_admin: JobAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    if not model_admin.has_cancel_permission(request):
        raise PermissionDenied
    job = _job(model_admin, request, object_id)
    try:
        services.job_cancel(job_id=job.pk, requested_by=request.user)
    except InvalidTransition as exc:
        model_admin.message_user(request, exc.message, messages.ERROR)
    else:
        log_job_action(request, [job], f"Cancelled (was {job.status}).")
        model_admin.message_user(request, "The job is cancelled; it will not start.", messages.SUCCESS)
    return HttpResponseRedirect(_change_url(job.pk))


def edit_and_retry(model_admin: JobAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """A form with the job's arguments; on submit, the job runs again with the edited ones."""
    if not model_admin.has_retry_permission(request):
        raise PermissionDenied
    job = _job(model_admin, request, object_id)
    form = EditAndRetryForm(request.POST or None, job=job)
    if request.method == "POST" and form.is_valid():
        args, kwargs = form.cleaned_data["args"], form.cleaned_data["kwargs"]
        try:
            again = services.job_retry(
                job_id=job.pk,
                requested_by=request.user,  # type: ignore[arg-type]
                args=args,
                kwargs=kwargs,
            )
        except JobsError as exc:  # refused by the submission's own checks, or no longer retryable
            form.add_error(None, exc.message)
        else:
            log_job_action(
                request,
                [job],
                f"Edited and retried as job {again.pk}: args {job.args} -> {again.args}, "
                f"kwargs {job.kwargs} -> {again.kwargs}.",
            )
            model_admin.message_user(
                request, "The job runs again with the edited arguments.", messages.SUCCESS
            )
            return HttpResponseRedirect(_change_url(again.pk))
    return TemplateResponse(
        request,
        "admin/jobs/job/edit_and_retry.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": f"Edit and retry {job.actor_name} {str(job.pk)[:8]}",
            "job": job,
            "form": form,
            "opts": Job._meta,
            "original": job,
        },
    )


def delete_finished(model_admin: JobAdmin, request: HttpRequest) -> HttpResponse:
    """Delete every job that finished before a day: pick the day, see the count, confirm."""
    if not model_admin.has_delete_permission(request):
        raise PermissionDenied
    form = DeleteFinishedForm(request.POST or None)
    count = None
    if request.method == "POST" and form.is_valid():
        before = timezone.make_aware(datetime.combine(form.cleaned_data["before"], time.min))
        if request.POST.get("confirmed") == "yes":
            deleted = services.jobs_delete_finished_before(before=before)
            LogEntry.objects.create(
                user_id=request.user.pk,  # type: ignore[misc]  # the admin serves signed-in users only
                content_type=ContentType.objects.get_for_model(Job),
                object_id="",
                object_repr=f"{deleted} jobs finished before {form.cleaned_data['before']}",
                action_flag=DELETION,
                change_message=f"Deleted {deleted} finished jobs (finished before {before:%Y-%m-%d %Z}).",
            )
            model_admin.message_user(request, f"Deleted {deleted} finished jobs.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:jobs_job_changelist"))
        count = Job.objects.filter(status__in=Job.FINAL_STATUSES, finished_at__lt=before).count()
    return TemplateResponse(
        request,
        "admin/jobs/job/delete_finished.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": "Delete finished jobs",
            "form": form,
            "count": count,
            "opts": Job._meta,
        },
    )


def apply_bulk(
    model_admin: admin.ModelAdmin[Job], request: HttpRequest, verb: str, job_ids: list[Any]
) -> None:
    """Retry or cancel `job_ids`, log each change, and tell how many changed and why others did not."""
    if verb == "retry":
        outcome = services.jobs_retry(job_ids=job_ids, requested_by=request.user)  # type: ignore[arg-type]
        for new in outcome.changed:
            log_job_action(
                request, [new.retry_of] if new.retry_of else [], f"Retried as job {new.pk} (bulk)."
            )
        done = ngettext_count(len(outcome.changed), "job runs again", "jobs run again")
    else:
        outcome = services.jobs_cancel(job_ids=job_ids, requested_by=request.user)  # type: ignore[arg-type]
        log_job_action(request, outcome.changed, "Cancelled (bulk).")
        done = ngettext_count(len(outcome.changed), "job cancelled", "jobs cancelled")
    message = f"{done}."
    if outcome.skipped:
        reasons = Counter(_reason(refusal) for refusal in outcome.skipped.values())
        named = ", ".join(job_id[:8] for job_id in list(outcome.skipped)[:NAMED_SKIPS])
        why = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common())
        more = " …" if len(outcome.skipped) > NAMED_SKIPS else ""
        message += f" Skipped {len(outcome.skipped)} ({why}): {named}{more}."
    model_admin.message_user(request, message, messages.WARNING if outcome.skipped else messages.SUCCESS)


def ngettext_count(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def _reason(refusal: JobsError) -> str:
    """A service's refusal as a short reason many jobs share ("already being retried", "running")."""
    if isinstance(refusal, JobNotFound):
        return "no longer exist"
    if "already being retried" in refusal.message:
        return "already being retried"
    current = refusal.extra.get("current")
    return f"{current}" if current else refusal.message
