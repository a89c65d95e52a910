"""Reads shared by the example workloads' admin, views and actors."""

from __future__ import annotations

from typing import Any

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


def reports_visible_to(user: Any) -> QuerySet[Report]:
    """Every report for users with workloads.view_report; else the reports the user asked for.

    A report's file holds data its creator was allowed to export (the users report lists every user),
    so being staff alone is not enough to read another user's report.
    """
    reports = report_list()
    if user.is_authenticated and user.has_perm("workloads.view_report"):
        return reports
    if not user.is_authenticated:
        return reports.none()
    return reports.filter(created_by=user)
