"""Integration tier: the real RabbitMQ and PostgreSQL, and live worker processes (manage.py rundramatiq)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from tests.live import WorkerProcess, mark_tier, require_services


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def services_up() -> None:
    require_services()


@pytest.fixture(scope="session")
def broker() -> dramatiq.Broker:
    return dramatiq.get_broker()


@pytest.fixture(scope="session")
def _worker_session(
    django_db_setup: None, django_db_blocker: Any, services_up: None
) -> Iterator[WorkerProcess]:
    with django_db_blocker.unblock():
        worker = WorkerProcess("main", tier="integration")
        worker.start()
        yield worker
        worker.stop()


@pytest.fixture
def worker(_worker_session: WorkerProcess, broker: dramatiq.Broker, transactional_db: None) -> WorkerProcess:
    """A live worker consuming every queue (restarted if a test killed it), on empty queues."""
    broker.flush_all()
    if not _worker_session.alive():
        _worker_session.stop()
        _worker_session.start()
    return _worker_session
