"""Routes of the jobs API, included under /api/ in the "api" namespace by project.urls."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.jobs.api import views

router = SimpleRouter()
router.register("jobs", views.JobViewSet, basename="job")

urlpatterns = [
    *router.urls,
    path("queues/", views.QueuesView.as_view(), name="queues"),
]
