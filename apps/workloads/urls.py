"""URLs of the example workloads (their paths are unchanged from when they lived in apps.jobs)."""

from __future__ import annotations

from django.urls import path

from apps.workloads import views

app_name = "workloads"

urlpatterns = [
    path("reports/<int:report_id>/download", views.report_download, name="report-download"),
    path("demo/external-records.json", views.demo_external_records, name="demo-external-records"),
]
