"""Reports through the API: ask for one (its build job starts on save), follow it, download it."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import FileResponse, Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from apps.jobs.api import idempotency
from apps.jobs.api.access import SubmitThrottle, requester
from apps.jobs.api.negotiation import AnswersItself
from apps.jobs.api.pagination import Cursors
from apps.jobs.api.serializers import JobSummary, StrictSerializer
from apps.jobs.api.views import IDEMPOTENCY_KEY, errors
from apps.jobs.models import Job
from apps.workloads import selectors, services
from apps.workloads.models import Report

#: Reports of data beyond the user's own need a permission to read that data.
REPORT_PERMISSIONS = {
    Report.Type.USERS: "auth.view_user",
    Report.Type.EXTERNAL_RECORDS: "workloads.view_externalrecord",
}


class ReportFilters(StrictSerializer):
    created_from = serializers.DateField(required=False, help_text="First day (ISO date), inclusive.")
    created_to = serializers.DateField(required=False, help_text="Last day (ISO date), inclusive.")
    status = serializers.ChoiceField(
        choices=Job.Status.choices, required=False, help_text="Jobs reports only."
    )
    actor_name = serializers.CharField(required=False, max_length=200, help_text="Jobs reports only.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("created_from"), attrs.get("created_to")
        if start and end and start > end:
            raise serializers.ValidationError({"created_to": ["Must not be before created_from."]})
        return {
            key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in attrs.items()
        }


class ReportRequest(StrictSerializer):
    type = serializers.ChoiceField(choices=Report.Type.choices)
    filters = ReportFilters(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        filters = attrs.get("filters") or {}
        if attrs["type"] != Report.Type.JOBS and {"status", "actor_name"} & set(filters):
            raise serializers.ValidationError(
                {"filters": ["status and actor_name filter jobs reports only."]}
            )
        return attrs


class ReportSerializer(serializers.ModelSerializer):
    job = JobSummary(read_only=True)
    download = serializers.SerializerMethodField(help_text="The CSV file, once built.")

    class Meta:
        model = Report
        fields = ["id", "type", "filters", "row_count", "created_at", "finished_at", "job", "download"]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download(self, report: Report) -> str | None:
        if not report.file.name:
            return None
        path = reverse("api:report-download", kwargs={"pk": report.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


def report_file_response(report: Report) -> FileResponse:
    """The report's CSV as a download, or Http404 while it is not built."""
    name = report.file.name  # an unbuilt report's file has no name (and is falsy)
    if not name:
        raise Http404("This report has not been built yet.")
    return FileResponse(
        report.file.open("rb"), as_attachment=True, filename=name.rsplit("/", 1)[-1], content_type="text/csv"
    )


@extend_schema_view(
    list=extend_schema(summary="List reports", responses={200: ReportSerializer(many=True), **errors(400)}),
    retrieve=extend_schema(summary="Show a report", responses={200: ReportSerializer, **errors(404)}),
)
class ReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Report]):
    """Reports: yours, or all with the permission to view reports."""

    lookup_value_regex = "[^/]+"  # any id reaches the view and its JSON 404

    serializer_class = ReportSerializer
    pagination_class = Cursors

    def get_queryset(self) -> QuerySet[Report]:
        return selectors.reports_visible_to(self.request.user)

    def get_throttles(self) -> list[Any]:
        return [SubmitThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        summary="Ask for a report",
        description="Creates the report; its build job starts once the request commits. "
        "The users report needs auth.view_user, the external records report "
        "workloads.view_externalrecord; a jobs report lists only your jobs unless you may view all jobs.",
        request=ReportRequest,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: ReportSerializer, **errors(400, 403, 413, 415, 422, 429)},
    )
    def create(self, request: Request) -> Response:
        def create_report() -> Response:
            ask = ReportRequest(data=request.data)
            ask.is_valid(raise_exception=True)
            needed = REPORT_PERMISSIONS.get(ask.validated_data["type"])
            if needed and not request.user.has_perm(needed):
                raise PermissionDenied(f"This report needs the permission {needed}.")
            report = services.report_request(
                type=ask.validated_data["type"],
                filters=ask.validated_data.get("filters") or {},
                created_by=requester(request),
            )
            data = self.get_serializer(report).data
            location = request.build_absolute_uri(reverse("api:report-detail", kwargs={"pk": report.pk}))
            return Response(data, status=202, headers={"Location": location})

        return idempotency.respond_once(request, create_report)

    @extend_schema(
        summary="Download a built report (CSV)",
        responses={(200, "text/csv"): OpenApiTypes.BINARY, **errors(404)},
    )
    @action(detail=True, methods=["get"], content_negotiation_class=AnswersItself)
    def download(self, request: Request, pk: str) -> FileResponse:
        return report_file_response(self.get_object())
