"""The jobs endpoints: submit, list, show, follow live, retry and cancel; and the queues.

Every change goes through apps.jobs.services, the same functions the admin and the commands call.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import Resolver404, resolve
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.jobs import queues, selectors, services
from apps.jobs.api import idempotency
from apps.jobs.api.access import SeesAllJobs, SubmitThrottle, may_act_on, requester
from apps.jobs.api.errors import Error, error_body
from apps.jobs.api.events import EVENT_SCHEMA, job_event_stream
from apps.jobs.api.filters import JobFilter
from apps.jobs.api.negotiation import AnswersItself
from apps.jobs.api.pagination import JobCursorPagination
from apps.jobs.api.serializers import JobDetail, JobSubmit, JobSummary
from apps.jobs.models import Job, JobAttempt


def errors(*codes: int) -> dict[int, Any]:
    """Schema entries for the error answers an endpoint gives (all in the shape of errors.Error)."""
    return {code: OpenApiResponse(Error) for code in (401, *codes)}


def accepted(request: Request, job: Job, serializer: type[JobSummary] = JobDetail) -> Response:
    """202 Accepted with the job and its URL in Location: the work happens later, on a worker."""
    data = serializer(
        job, context={"request": request, "operator": selectors.user_sees_all_jobs(request.user)}
    ).data
    return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["links"]["self"]})


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Send the same key again to get the same answer instead of a second job (kept 24 h); "
    "the same key with a different request answers 422.",
)
LAST_EVENT_ID = OpenApiParameter(
    "Last-Event-ID",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    description="Resume after this status event (browsers send it when they reconnect).",
)


@extend_schema_view(
    list=extend_schema(summary="List jobs", responses={200: JobSummary(many=True), **errors(400)}),
    retrieve=extend_schema(summary="Show a job", responses={200: JobDetail, **errors(404)}),
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Job]):
    """Jobs: yours, or every user's with the permission to view jobs."""

    # Any id reaches the view (and its JSON 404), not only ids without a dot.
    lookup_value_regex = "[^/]+"

    serializer_class = JobDetail
    pagination_class = JobCursorPagination
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    filterset_class = JobFilter
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]

    def get_queryset(self) -> QuerySet[Job]:
        jobs = selectors.jobs_visible_to(self.request.user)
        if self.action == "list":
            return jobs.defer("args", "kwargs", "options", "result", "last_traceback")
        if self.action == "retrieve":
            return jobs.prefetch_related(Prefetch("attempt_set", JobAttempt.objects.order_by("number")))
        return jobs

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return JobSummary if self.action == "list" else JobDetail

    def get_serializer_context(self) -> dict[str, Any]:
        return {
            **super().get_serializer_context(),
            "operator": selectors.user_sees_all_jobs(self.request.user),
        }

    def get_throttles(self) -> list[Any]:
        return [SubmitThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        summary="Submit a job",
        request=JobSubmit,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: JobDetail, **errors(400, 413, 415, 422, 429)},
    )
    def create(self, request: Request) -> Response:
        def submit() -> Response:
            submission = JobSubmit(data=request.data)
            submission.is_valid(raise_exception=True)
            data = submission.validated_data
            job = services.job_submit(
                actor=data["actor"],
                kwargs=data["kwargs"],
                queue=data.get("queue"),
                priority=data.get("priority", 0),
                delay=data.get("delay_ms"),
                requested_by=requester(request),
                source=Job.Source.API,
            )
            return accepted(request, job)

        return idempotency.respond_once(request, submit)

    @extend_schema(
        summary="Retry a failed or cancelled job",
        description="Runs it again as a new job linked to this one (`retry_of`); this one's history stays.",
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: JobDetail, **errors(400, 403, 404, 409, 422, 429)},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        job = self.get_object()
        if not may_act_on(request.user, job, "jobs.retry_job"):
            raise PermissionDenied("Only its submitter or a user allowed to retry jobs can retry this job.")
        return idempotency.respond_once(
            request,
            lambda: accepted(
                request,
                services.job_retry(job_id=job.pk, requested_by=requester(request), source=Job.Source.API),
            ),
        )

    @extend_schema(
        summary="Cancel a waiting job",
        description="A pending, queued or retrying job is cancelled and never starts, even when its "
        "message is already in RabbitMQ.",
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: JobDetail, **errors(400, 403, 404, 409, 422, 429)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        job = self.get_object()
        if not may_act_on(request.user, job, "jobs.cancel_job"):
            raise PermissionDenied("Only its submitter or a user allowed to cancel jobs can cancel this job.")

        def cancel() -> Response:
            cancelled = services.job_cancel(job_id=job.pk, requested_by=requester(request))
            return Response(self.get_serializer(cancelled).data)

        return idempotency.respond_once(request, cancel)

    @extend_schema(
        summary="Follow a job live (server-sent events)",
        description="Streams `status`, `progress` and, once the job is final, `end` events; see the README.",
        parameters=[LAST_EVENT_ID],
        responses={(200, "text/event-stream"): EVENT_SCHEMA, **errors(400, 404)},
    )
    @action(detail=True, methods=["get"], content_negotiation_class=AnswersItself)
    def events(self, request: Request, pk: str) -> StreamingHttpResponse:
        job = self.get_object()
        last_event_id = request.headers.get("Last-Event-ID", "0").strip() or "0"
        if not last_event_id.isdigit() or len(last_event_id) > 18:
            raise serializers.ValidationError(
                {"Last-Event-ID": ["Must be the id of an event of this stream."]}
            )
        # The request's thread would keep its database connection until the stream ends (Django
        # closes it when the response finishes): hand it back now, the stream reads through the
        # process's one reader.
        if not connection.in_atomic_block:
            connection.close()
        response = StreamingHttpResponse(
            job_event_stream(str(job.pk), last_event_id=int(last_event_id)), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass frames on at once
        return response


class QueueDepth(serializers.Serializer):
    name = serializers.CharField()
    ready = serializers.IntegerField(allow_null=True, help_text="Messages waiting for a worker.")
    delayed = serializers.IntegerField(help_text="Jobs waiting for their delay or retry backoff (ledger).")
    dead = serializers.IntegerField(allow_null=True, help_text="Dead-lettered messages (.XQ).")
    consumers = serializers.IntegerField(allow_null=True, help_text="Worker channels consuming the queue.")
    running = serializers.IntegerField(help_text="Jobs of the queue running now, from the ledger.")


class QueuesView(APIView):
    """Every queue's depth in RabbitMQ and its running jobs in the ledger (operators only)."""

    permission_classes = [SeesAllJobs]

    @extend_schema(summary="Queue depths", responses={200: QueueDepth(many=True), **errors(403, 503)})
    def get(self, request: Request) -> Response:
        depths = queues.queue_depths()
        return Response(QueueDepth([depth.as_dict() for depth in depths], many=True).data)


def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other path under /api/: a JSON 404 (not Django's HTML page), naming the path with a slash."""
    message = f"No endpoint at /api/{path}."
    try:
        resolve(f"/api/{path}/")
    except Resolver404:
        pass
    else:
        message += f" Did you mean /api/{path}/ (with a trailing slash)?"
    return JsonResponse(error_body(404, "not_found", message), status=404)
