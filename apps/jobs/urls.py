"""URLs of the jobs app outside the API: the health checks and the Prometheus metrics."""

from __future__ import annotations

from django.urls import path

from apps.jobs import metrics, views

app_name = "jobs"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
]
