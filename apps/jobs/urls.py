"""URLs of the jobs app."""

from __future__ import annotations

from django.urls import path

from apps.jobs import views

app_name = "jobs"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
]
