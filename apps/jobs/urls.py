"""URLs of the jobs app outside the API: the health checks."""

from __future__ import annotations

from django.urls import path

from apps.jobs import views

app_name = "jobs"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
]
