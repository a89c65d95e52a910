"""Bad requests get one JSON error shape and the right status; no input produces a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from rest_framework.test import APIClient

from apps.jobs.api.middleware import RequireContentLength
from apps.jobs.models import Job

pytestmark = pytest.mark.django_db
JOBS = "/api/jobs/"


def post_raw(api: APIClient, body: bytes | str, content_type: str = "application/json") -> Any:
    return api.generic("POST", JOBS, body, content_type=content_type)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code) and error["message"]
    assert not Job.objects.exists()
    return error


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("actor=jobs.probe", "application/x-www-form-urlencoded"),
        ('{"actor": "jobs.probe"}', "text/plain"),
        ('{"actor": "jobs.probe"}', ""),
    ],
)
def test_body__that_is_not_json_is_415(api: APIClient, body: str, content_type: str) -> None:
    assert_error(post_raw(api, body, content_type), 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "body",
    [
        '{"actor": "jobs.probe",',  # cut short
        '{"actor": "jobs.probe", "kwargs": {"sleep_ms": NaN}}',
        '{"actor": "jobs.probe", "kwargs": {"sleep_ms": Infinity}}',
        '{"actor": "jobs.probe", "kwargs": {"sleep_ms": -Infinity}}',
        b'{"actor": "\xff"}',  # not UTF-8
        "[" * 100_000 + "]" * 100_000,  # past Python's recursion limit
        '{"actor": "jobs.probe", "kwargs": {"items": ' + "[" * 40 + "]" * 40 + "}}",  # past the depth limit
    ],
    ids=["truncated", "nan", "infinity", "minus-infinity", "not-utf8", "recursion", "too-deep"],
)
def test_body__malformed_nested_or_non_finite_json_is_400(api: APIClient, body: str | bytes) -> None:
    assert_error(post_raw(api, body), 400, "parse_error")


def test_body__over_the_size_limit_is_413(api: APIClient, settings: Any) -> None:
    settings.JOBS_API_MAX_BODY_BYTES = 1000
    body = '{"actor": "jobs.probe", "kwargs": {"pad": "' + "x" * 2000 + '"}}'

    error = assert_error(post_raw(api, body), 413, "payload_too_large")
    assert "1000 bytes" in error["message"]


@pytest.mark.parametrize("body", ["[]", '"jobs.probe"', "null", "42"])
def test_body__that_is_not_an_object_is_400(api: APIClient, body: str) -> None:
    assert_error(post_raw(api, body), 400, "invalid")


def test_unknown_path__is_404(api: APIClient) -> None:
    assert api.get("/api/jobs/00000000-0000-0000-0000-000000000000/").json()["error"]["code"] == "not_found"


def test_method__not_allowed_is_405(api: APIClient) -> None:
    assert_error(api.delete(JOBS), 405, "method_not_allowed")


def test_body__sent_chunked_without_a_length_is_411_not_read_as_empty(api: APIClient) -> None:
    # DRF reads a body up to its Content-Length only: a chunked submission would look empty. The
    # test client always sends a length, so the request is built by hand, as an ASGI server passes it.
    request = RequestFactory().post(
        JOBS, b'{"actor": "jobs.probe"}', content_type="application/json", HTTP_TRANSFER_ENCODING="chunked"
    )
    del request.META["CONTENT_LENGTH"]

    response = RequireContentLength(lambda request: HttpResponse("passed on"))(request)

    assert response.status_code == 411
    assert json.loads(response.content)["error"]["code"] == "length_required"
    assert not Job.objects.exists()


def test_unknown_api_path__is_a_json_404(api: APIClient) -> None:
    error = assert_error(api.get("/api/nope/"), 404, "not_found")
    assert "/api/nope/" in error["message"]


def test_post_without_the_trailing_slash__is_a_json_404_naming_the_right_path(api: APIClient) -> None:
    # Not APPEND_SLASH's redirect, which would lose the body (and raises in DEBUG).
    error = assert_error(api.post("/api/jobs", {"actor": "jobs.probe"}, format="json"), 404, "not_found")
    assert "Did you mean /api/jobs/" in error["message"]
