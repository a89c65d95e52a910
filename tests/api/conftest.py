"""API tier: the REST API served by a live ASGI server (gunicorn + uvicorn worker), as in production.

The server is another process on the pytest-django test database, so tests use transactional_db:
what a test writes is committed and visible to the server, and the tables are emptied afterwards.
No worker runs here: a submitted job stays queued, so its event stream stays open until the test
cancels it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from apps.jobs import services
from apps.jobs.models import Job
from tests.api.server import ASGIServer
from tests.live import mark_tier, require_services, wait_job


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, pytest.mark.api)


# httpx logs every request at INFO: hundreds of lines in a failure's captured log, none of them useful.
logging.getLogger("httpx").setLevel(logging.WARNING)


@pytest.fixture(scope="session", autouse=True)
def services_up() -> None:
    require_services()


@pytest.fixture(scope="session")
def _server_session(django_db_setup: None, django_db_blocker: Any, services_up: None) -> Iterator[ASGIServer]:
    with django_db_blocker.unblock():
        server = ASGIServer()
        server.start()
        try:
            yield server
        finally:
            server.stop()
            # Jobs submitted here were published to RabbitMQ and no worker consumed them: drop them,
            # so that no later worker on this virtual host receives jobs of a deleted test database.
            dramatiq.get_broker().flush_all()


@pytest.fixture
def server(_server_session: ASGIServer, transactional_db: None) -> ASGIServer:
    """The live server (one per session), on committed data."""
    assert _server_session.alive(), f"the web server has exited:\n{_server_session.log_tail()}"
    return _server_session


@pytest.fixture
def api_user(transactional_db: None) -> Any:
    """A user without any permission: it sees and acts on its own jobs only."""
    return get_user_model().objects.create_user("api-user", "api-user@example.com")


@pytest.fixture
def token(api_user: Any) -> str:
    return Token.objects.create(user=api_user).key


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    """The headers authenticating a request as api_user."""
    return {"Authorization": f"Token {token}"}


@pytest.fixture
def queued_job(api_user: Any) -> Job:
    """A probe job of api_user, queued in RabbitMQ; no worker runs it, so it waits until cancelled."""
    job = services.job_submit(actor="jobs.probe", kwargs={"sleep_ms": 0}, requested_by=api_user)
    return wait_job(job.pk, Job.Status.QUEUED, timeout=10)
