"""Reads shared by the example workloads' admin, views and actors."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.jobs.exceptions import PermanentFailure
from apps.workloads.models import Report


def report_get(*, report_id: int) -> Report:
    """The report with this id; a missing one is a permanent failure for the job building it."""
    try:
        return Report.objects.get(pk=report_id)
    except Report.DoesNotExist:
        raise PermanentFailure(f"Report {report_id} does not exist.") from None


def report_list() -> QuerySet[Report]:
    """Reports for listings, each with the job that builds it, in the same query."""
    return Report.objects.select_related("job")
