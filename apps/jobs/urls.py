"""URLs of the jobs app."""

from __future__ import annotations

from django.urls import path

from apps.jobs import views

app_name = "jobs"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("reports/<int:report_id>/download", views.report_download, name="report-download"),
    path("demo/external-records.json", views.demo_external_records, name="demo-external-records"),
]
