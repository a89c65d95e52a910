"""What the API reads (a submission, a public actor's arguments) and shows (a job, its attempts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.jobs.api import registry
from apps.jobs.models import Job, JobAttempt


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare: a typo, or a field a client must not set (status, result)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            writable = [name for name, field in self.fields.items() if not field.read_only]
            unknown = sorted(str(name) for name in data if name not in writable)
            if unknown:
                allowed = ", ".join(writable) or "none"
                raise serializers.ValidationError(
                    {name: [f"Unknown field; the fields accepted here are: {allowed}."] for name in unknown}
                )
        return super().to_internal_value(data)


class ActorInput(StrictSerializer):
    """The keyword arguments of an actor the API offers (see registry.expose).

    Its validated data is what the job receives, so fields must validate to JSON values.
    """


class JobSubmit(StrictSerializer):
    actor = serializers.CharField(max_length=200, help_text="The name of an actor the API offers.")
    args = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text="Positional arguments, matched to the actor's arguments in order.",
    )
    kwargs = serializers.DictField(required=False, help_text="Keyword arguments of the actor.")
    queue = serializers.CharField(
        required=False, max_length=100, help_text="Another queue than the actor's own."
    )
    priority = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=settings.BROKER_MAX_PRIORITY,
        help_text="0 (the default) to 10, the most urgent.",
    )
    delay_ms = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=settings.JOBS_MAX_DELAY_MS,
        help_text="Run no sooner than this many milliseconds from now.",
    )

    def validate_actor(self, value: str) -> str:
        if registry.arguments_for(value) is None:
            offered = ", ".join(registry.public_actor_names())
            raise serializers.ValidationError(f"Unknown actor {value!r}; the API offers: {offered}.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        arguments_class = registry.arguments_for(attrs["actor"])
        assert arguments_class is not None, "validate_actor let it through"
        names = [name for name, field in arguments_class().fields.items() if not field.read_only]
        args = attrs.pop("args", [])
        kwargs = dict(attrs.get("kwargs", {}))
        if len(args) > len(names):
            raise serializers.ValidationError(
                {"args": [f"{attrs['actor']} takes at most {len(names)} arguments: {', '.join(names)}."]}
            )
        for name, value in zip(names, args, strict=False):
            if name in kwargs:
                raise serializers.ValidationError({"args": [f"{name} is given both in args and in kwargs."]})
            kwargs[name] = value
        arguments = arguments_class(data=kwargs)
        if not arguments.is_valid():
            raise serializers.ValidationError({"kwargs": arguments.errors})
        attrs["kwargs"] = dict(arguments.validated_data)
        return attrs


class Progress(serializers.Serializer):
    current = serializers.IntegerField(source="progress_current", allow_null=True)
    total = serializers.IntegerField(source="progress_total", allow_null=True)
    percent = serializers.FloatField(source="progress_percent", allow_null=True)
    message = serializers.CharField(source="progress_message")


class Attempt(serializers.ModelSerializer):
    traceback = serializers.SerializerMethodField()

    class Meta:
        model = JobAttempt
        fields = [
            "number",
            "outcome",
            "started_at",
            "finished_at",
            "duration_ms",
            "error_class",
            "error_message",
            "traceback",
            "worker_host",
            "redelivered",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_traceback(self, attempt: JobAttempt) -> str | None:
        return attempt.traceback if self.context.get("operator") else None


def _absolute(request: Any, name: str, job_id: Any) -> str:
    path = reverse(f"api:{name}", kwargs={"pk": job_id})
    return request.build_absolute_uri(path) if request is not None else path


class JobLinks(serializers.Serializer):
    self = serializers.URLField()
    events = serializers.URLField()
    retry_of = serializers.URLField(allow_null=True)


class JobSummary(serializers.ModelSerializer):
    """A job as lists show it: no arguments, result or attempts."""

    actor = serializers.CharField(source="actor_name")
    queue = serializers.CharField(source="queue_name")
    progress = Progress(source="*")
    attempt_count = serializers.IntegerField(source="attempts")
    error = serializers.SerializerMethodField()
    duration_ms = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "actor",
            "queue",
            "status",
            "priority",
            "source",
            "progress",
            "attempt_count",
            "max_retries",
            "error",
            "created_at",
            "scheduled_at",
            "started_at",
            "finished_at",
            "next_retry_at",
            "duration_ms",
            "retry_of",
            "links",
        ]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_error(self, job: Job) -> str | None:
        """The last attempt's error, while the job is retrying and once it failed."""
        if job.status in (Job.Status.FAILED, Job.Status.RETRYING) and job.last_error:
            return job.last_error
        return None

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_duration_ms(self, job: Job) -> int | None:
        duration = job.duration
        return round(duration.total_seconds() * 1000) if duration is not None else None

    @extend_schema_field(JobLinks)
    def get_links(self, job: Job) -> dict[str, str | None]:
        request = self.context.get("request")
        return {
            "self": _absolute(request, "job-detail", job.pk),
            "events": _absolute(request, "job-events", job.pk),
            "retry_of": _absolute(request, "job-detail", job.retry_of_id) if job.retry_of_id else None,
        }


class JobDetail(JobSummary):
    """A job with everything it carries: arguments, result, every attempt and the jobs retrying it."""

    attempts = Attempt(source="attempt_set", many=True)
    result = serializers.SerializerMethodField()
    retries = serializers.SerializerMethodField()

    class Meta(JobSummary.Meta):
        fields = [
            *JobSummary.Meta.fields,
            "args",
            "kwargs",
            "result",
            "attempts",
            "retries",
            "enqueued_at",
            "updated_at",
        ]

    @extend_schema_field(OpenApiTypes.ANY)
    def get_result(self, job: Job) -> Any:
        return job.result if job.status == Job.Status.SUCCEEDED else None

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_retries(self, job: Job) -> list[str]:
        return [str(pk) for pk in job.retries.order_by("created_at").values_list("pk", flat=True)]
