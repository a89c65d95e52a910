"""Refuses API requests whose body has no declared length, instead of reading them as empty."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.jobs.api.errors import error_body


class RequireContentLength:
    """411 for a chunked body under /api/: DRF reads a body only up to Content-Length, so a chunked
    submission would be taken for an empty one (and its size limit never checked)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not request.META.get("CONTENT_LENGTH") and request.path.startswith("/api/"):
            message = "Send the request body with a Content-Length header, not chunked."
            return JsonResponse(error_body(411, "length_required", message), status=411)
        return self.get_response(request)
