"""Health checks, the OpenAPI schema and its docs page, and the queues endpoint (on the real RabbitMQ)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs.models import Job

#: A RabbitMQ URL nobody answers on.
CLOSED_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:1/%2F"
ACTOR_QUEUES = {"default", "emails", "reports", "batch"}
QUEUE_KEYS = {"name", "ready", "delayed", "dead", "consumers", "running"}
API_PATHS = [
    "/api/jobs/",
    "/api/jobs/{id}/",
    "/api/jobs/{id}/events/",
    "/api/jobs/{id}/retry/",
    "/api/jobs/{id}/cancel/",
    "/api/queues/",
    "/api/emails/",
    "/api/reports/",
]


def _api(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.get_or_create(user=user)[0].key)
    return client


class _AssetUrls(HTMLParser):
    """The src and href attributes of a page's script, link and img tags."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.scripts.append(found["src"] or "")
        elif tag == "link" and found.get("href"):
            self.links.append(found["href"] or "")
        elif tag == "img" and found.get("src"):
            self.images.append(found["src"] or "")


# --- /healthz and /readyz ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz__answers_200_when_the_database_and_rabbitmq_are_reachable() -> None:
    response = Client().get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker"}
    for check in body["checks"].values():
        assert check["ok"] is True
        assert isinstance(check["ms"], int | float)


@pytest.mark.django_db
def test_readyz__answers_503_naming_the_broker_when_rabbitmq_is_unreachable(settings: Any) -> None:
    # Given a RabbitMQ URL on a closed port
    settings.RABBITMQ_URL = CLOSED_RABBITMQ_URL

    # When the readiness check runs
    response = Client().get("/readyz")

    # Then it answers 503, the broker check failed with a message, and the database is still fine
    assert response.status_code == 503
    body = response.json()
    assert body["status"] != "ok"
    assert body["checks"]["broker"]["ok"] is False
    assert isinstance(body["checks"]["broker"]["error"], str) and body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_healthz__stays_200_when_rabbitmq_is_unreachable(settings: Any) -> None:
    settings.RABBITMQ_URL = CLOSED_RABBITMQ_URL

    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- /api/schema/ and /api/docs/ -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"HTTP_ACCEPT": "application/json"}, id="accept-json"),
        pytest.param({"data": {"format": "json"}}, id="format-json"),
    ],
)
@pytest.mark.django_db
def test_schema__is_an_openapi_3_document_listing_every_endpoint(request_kwargs: dict[str, Any]) -> None:
    response = Client().get("/api/schema/", **request_kwargs)

    assert response.status_code == 200
    assert "json" in response["Content-Type"]
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    missing = [path for path in API_PATHS if path not in schema["paths"]]
    assert missing == [], sorted(schema["paths"])


def test_schema__validates_without_warnings() -> None:
    # drf-spectacular's own check: the schema against the OpenAPI JSON schema, and no generator warning
    output = io.StringIO()

    call_command("spectacular", "--validate", "--fail-on-warn", stdout=output, stderr=io.StringIO())

    assert "openapi:" in output.getvalue()


@pytest.mark.django_db
def test_docs__swagger_ui_loads_its_scripts_and_styles_from_this_site(settings: Any) -> None:
    response = Client().get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    page = _AssetUrls()
    page.feed(html)
    assert page.scripts, "the page loads Swagger UI's script"
    assert any(url.endswith(".css") for url in page.links), "the page loads Swagger UI's stylesheet"

    # Every asset URL is a path on this site: no scheme, no other host (no CDN)
    for url in page.scripts + page.links + page.images:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert url.startswith(django_settings.STATIC_URL), url
        # And the file ships with the project's static files, and the site serves it
        assert finders.find(parts.path.removeprefix(django_settings.STATIC_URL)) is not None, url
    assert "cdn.jsdelivr.net" not in html
    settings.WHITENOISE_USE_FINDERS = True  # serve static files without collectstatic, as DEBUG would
    for url in page.scripts + page.links:
        assert Client().get(url).status_code == 200, url


# --- GET /api/queues/ ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_queues__without_credentials_is_401() -> None:
    response = APIClient().get("/api/queues/")

    assert response.status_code == 401
    assert response.json()["error"]["status"] == 401


@pytest.mark.django_db
def test_queues__a_plain_user_gets_403() -> None:
    # Every queue's depth is an operator's view, not a plain user's
    user = get_user_model().objects.create_user("ada", "ada@example.com", "password")

    response = _api(user).get("/api/queues/")

    assert response.status_code == 403
    assert (response.json()["error"]["status"], response.json()["error"]["code"]) == (
        403,
        "permission_denied",
    )


@pytest.mark.django_db
def test_queues__a_superuser_sees_each_actor_queue_with_its_running_jobs(
    admin_user: Any, job_factory: Callable[..., Job]
) -> None:
    # Given two jobs running on "batch", one queued there, and one running on "default"
    job_factory(status=Job.Status.RUNNING, queue_name="batch")
    job_factory(status=Job.Status.RUNNING, queue_name="batch")
    job_factory(status=Job.Status.QUEUED, queue_name="batch")
    job_factory(status=Job.Status.RUNNING, queue_name="default")
    # and, on "emails", one job delayed by its submitter and one waiting for its retry backoff
    later = timezone.now() + timedelta(minutes=10)
    job_factory(status=Job.Status.QUEUED, queue_name="emails", scheduled_at=later)
    job_factory(status=Job.Status.RETRYING, queue_name="emails", next_retry_at=later)
    job_factory(
        status=Job.Status.QUEUED, queue_name="emails", scheduled_at=timezone.now() - timedelta(minutes=1)
    )

    # When a superuser reads the queues
    response = _api(admin_user).get("/api/queues/")

    # Then there is one entry per actor queue, with RabbitMQ's counts (None when never declared)
    assert response.status_code == 200, response.content
    queues = response.json()
    names = [queue["name"] for queue in queues]
    assert sorted(names) == sorted(ACTOR_QUEUES)
    for queue in queues:
        assert set(queue) == QUEUE_KEYS, queue
        for key in ("ready", "delayed", "dead", "consumers"):
            assert queue[key] is None or type(queue[key]) is int, queue
        assert type(queue["running"]) is int
    # And running counts the ledger's running jobs of each queue
    running = {queue["name"]: queue["running"] for queue in queues}
    assert running == {"batch": 2, "default": 1, "emails": 0, "reports": 0}
    # And delayed counts the ledger's jobs waiting for a delay or a backoff (RabbitMQ cannot tell)
    delayed = {queue["name"]: queue["delayed"] for queue in queues}
    assert delayed == {"batch": 0, "default": 0, "emails": 2, "reports": 0}


@pytest.mark.django_db
def test_queues__answers_503_when_rabbitmq_is_unreachable(admin_user: Any, settings: Any) -> None:
    settings.RABBITMQ_URL = CLOSED_RABBITMQ_URL

    response = _api(admin_user).get("/api/queues/")

    assert response.status_code == 503
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (503, "service_unavailable")
    assert error["message"]
