"""A mixin for the admin of any model whose objects trigger jobs: their page lists their jobs.

    @admin.register(Report)
    class ReportAdmin(TriggeredJobsMixin, admin.ModelAdmin):
        ...

The object's page then ends with its jobs, newest first (status, progress, attempts, times), each
with a "Run again" button for users allowed to retry jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from apps.jobs import selectors, services
from apps.jobs.admin.audit import log_job_action
from apps.jobs.exceptions import InvalidTransition

if TYPE_CHECKING:
    from django.template.response import _TemplateForResponseT  # the stubs' name for what Django takes


class TriggeredJobsMixin:
    #: How many of the object's jobs its page lists.
    triggered_jobs_shown = 20
    change_form_template: ClassVar[_TemplateForResponseT | None] = "admin/jobs/triggered_jobs.html"

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        jobs = list(selectors.jobs_triggered_by(obj)[: self.triggered_jobs_shown]) if obj is not None else []
        context = {
            **(extra_context or {}),
            "triggered_jobs": jobs,
            "can_run_again": request.user.has_perm("jobs.retry_job"),
            "run_again_url_name": self._run_again_url_name(),
        }
        return super().change_view(request, object_id, form_url, context)  # type: ignore[misc]

    def get_urls(self) -> list[URLPattern]:
        run_again = self.admin_site.admin_view(require_POST(self.run_again_view))  # type: ignore[attr-defined]
        own = [
            path(
                "<path:object_id>/jobs/<uuid:job_id>/run-again/",
                run_again,
                name=self._run_again_url_name().removeprefix("admin:"),
            )
        ]
        return [*own, *super().get_urls()]  # type: ignore[misc]

    def run_again_view(self, request: HttpRequest, object_id: str, job_id: Any) -> HttpResponse:
        if not request.user.has_perm("jobs.retry_job"):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))  # type: ignore[attr-defined]
        if obj is None:
            raise Http404
        job = selectors.jobs_triggered_by(obj).filter(pk=job_id).first()
        if job is None:
            raise Http404("This object did not trigger that job.")
        try:
            again = services.job_run_again(job_id=job.pk, requested_by=request.user)  # type: ignore[arg-type]
        except InvalidTransition as exc:
            messages.error(request, exc.message)
        else:
            log_job_action(
                request, [job], f"Run again from {obj._meta.verbose_name} #{obj.pk} as job {again.pk}."
            )
            messages.success(request, f"Running {job.actor_name} again as job {str(again.pk)[:8]}.")
        opts = self.model._meta  # type: ignore[attr-defined]
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        )

    def _run_again_url_name(self) -> str:
        opts = self.model._meta  # type: ignore[attr-defined]
        return f"admin:{opts.app_label}_{opts.model_name}_run_job_again"
