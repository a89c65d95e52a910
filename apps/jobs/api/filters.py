"""Filters of the job list (`GET /api/jobs/?status=failed&actor=jobs.probe&created_after=...`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters
from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError

from apps.jobs.models import Job


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time compared in UTC: PostgreSQL refuses offsets past ±15:59 that ISO allows."""

    def filter(self, qs: QuerySet[Any], value: datetime | None) -> QuerySet[Any]:
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                raise ValidationError({str(self.field_name): ["Out of the range of dates."]}) from None
        return super().filter(qs, value)


class JobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=Job.Status.choices, help_text="One or more statuses (repeat the parameter)."
    )
    actor = django_filters.CharFilter(field_name="actor_name", help_text="An actor's full name.")
    queue = django_filters.CharFilter(field_name="queue_name")
    created_after = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="ISO 8601, inclusive."
    )
    created_before = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="ISO 8601, exclusive."
    )

    class Meta:
        model = Job
        fields = ["status", "actor", "queue", "created_after", "created_before"]
