"""One JSON error shape for every API answer that is not a success.

    {"error": {"status": 409, "code": "conflict", "message": "...", "fields": {"kwargs": {...}}}}

`fields` is present for invalid input only. The jobs app's own errors are translated here, so
services stay free of HTTP.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from apps.jobs.exceptions import BrokerUnavailable, InvalidTransition, JobNotFound, JobsError

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The job is not in a state that allows this."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A service the answer needs is unreachable; try again later."
    default_code = "service_unavailable"


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with a different request."
    default_code = "idempotency_key_reused"


def _translated(exc: Exception) -> Exception:
    """The jobs app's and Django's errors as the API exceptions they mean."""
    if isinstance(exc, JobNotFound | Http404):
        return exceptions.NotFound("No job has this id." if isinstance(exc, JobNotFound) else None)
    if isinstance(exc, InvalidTransition):
        return Conflict(exc.message)
    if isinstance(exc, BrokerUnavailable):
        return ServiceUnavailable(exc.message)
    if isinstance(exc, JobsError):
        # UnknownActor, UnknownQueue, InvalidJobArguments, InvalidJobOptions: the request was wrong.
        field = exc.extra.get("field")
        return exceptions.ValidationError({field: [exc.message]} if field else [exc.message])
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    return exc


def _first(detail: Any, path: str = "") -> tuple[str, str]:
    """The dotted path and text of the first message in a DRF error detail (nested dicts and lists)."""
    while isinstance(detail, dict | list) and detail:
        if isinstance(detail, dict):
            key, detail = next(iter(detail.items()))
            if key != "non_field_errors":
                path = f"{path}.{key}" if path else str(key)
        else:
            index = next((i for i, item in enumerate(detail) if item), 0)
            detail = detail[index]
            if isinstance(detail, dict | list):
                path = f"{path}.{index}" if path else str(index)
    return path, str(detail) if detail else "Invalid input."


def error_body(status_code: int, code: str, message: str, fields: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"status": status_code, "code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    # Imported here: rest_framework.views reads the API settings, which name this package's parser.
    from rest_framework.views import exception_handler as drf_exception_handler

    exc = _translated(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug, not bad input: logged with its traceback, answered in the same shape.
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        return Response(
            error_body(500, "server_error", "The server failed to answer; the error is logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    assert isinstance(exc, exceptions.APIException)
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        fields = (
            {key: value for key, value in detail.items() if key != "non_field_errors"}
            if isinstance(detail, dict)
            else None
        )
        path, text = _first(detail)
        response.data = error_body(
            response.status_code, "invalid", f"{path}: {text}" if path else text, fields
        )
    else:
        code = exc.get_codes()
        response.data = error_body(
            response.status_code, code if isinstance(code, str) else exc.default_code, _first(exc.detail)[1]
        )
    return response


class ErrorDetail(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    # Named like the key it documents; DRF collects declared fields, so Serializer.fields is unaffected.
    fields = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="Invalid input: the message(s) per field."
    )


class Error(serializers.Serializer):
    """The body of every answer that is not a success."""

    error = ErrorDetail()
