"""POST /api/emails/: send an email in the background."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.jobs import services
from apps.jobs.api import idempotency
from apps.jobs.api.access import SubmitThrottle, requester
from apps.jobs.api.serializers import JobDetail
from apps.jobs.api.views import IDEMPOTENCY_KEY, accepted, errors
from apps.jobs.models import Job
from apps.workloads import actors
from apps.workloads.api.inputs import SendEmailInput


class EmailView(APIView):
    throttle_classes = [SubmitThrottle]

    @extend_schema(
        summary="Send an email",
        description="Answers at once with the job that sends it; bad addresses fail it, outages are retried.",
        request=SendEmailInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: JobDetail, **errors(400, 413, 415, 422, 429)},
    )
    def post(self, request: Request) -> Response:
        def send() -> Response:
            email = SendEmailInput(data=request.data)
            email.is_valid(raise_exception=True)
            job = services.job_submit(
                actor=actors.send_email,
                kwargs=dict(email.validated_data),
                requested_by=requester(request),
                source=Job.Source.API,
            )
            return accepted(request, job)

        return idempotency.respond_once(request, send)
