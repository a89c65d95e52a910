"""URL routes of the jobs system."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.jobs.api import urls as jobs_api
from apps.jobs.api.views import not_found as api_not_found
from apps.workloads.api import urls as workloads_api

if TYPE_CHECKING:
    from django.urls import URLPattern, URLResolver

api: list[URLPattern | URLResolver] = [
    *jobs_api.urlpatterns,
    *workloads_api.urlpatterns,
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    # Last: every other path answers the API's JSON 404 (also instead of APPEND_SLASH's redirect,
    # which would turn a POST into a GET without its body).
    re_path(r"^(?P<path>.*?)/?$", api_not_found),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("admin/console/", include("apps.jobs.admin.urls")),
    path("admin/", admin.site.urls),
    path("api/", include((api, "api"))),
    path("", include("apps.jobs.urls")),
    path("", include("apps.workloads.urls")),
]

if settings.DEBUG:
    from django.conf.urls.static import static

    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
