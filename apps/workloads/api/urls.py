"""Routes of the workloads' API, included under /api/ in the "api" namespace by project.urls."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.workloads.api.emails import EmailView
from apps.workloads.api.reports import ReportViewSet

router = SimpleRouter()
router.register("reports", ReportViewSet, basename="report")

urlpatterns = [
    *router.urls,
    path("emails/", EmailView.as_view(), name="emails"),
]
