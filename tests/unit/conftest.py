"""Unit-tier fixtures: Dramatiq's in-memory StubBroker and a worker on it."""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker


@pytest.fixture
def stub_broker() -> Iterator[StubBroker]:
    broker = dramatiq.get_broker()
    assert isinstance(broker, StubBroker), "unit tests run with project.test_settings"
    broker.flush_all()
    yield broker
    broker.flush_all()


@pytest.fixture(scope="session")
def _process_booted() -> None:
    # The CLI emits process_boot once in each worker process; hand-built workers must do it
    # themselves, or TimeLimit never starts its timer thread (which can start only once).
    dramatiq.get_broker().emit_after("process_boot")


@pytest.fixture
def stub_worker(
    stub_broker: StubBroker, transactional_db: None, _process_booted: None
) -> Iterator[dramatiq.Worker]:
    """A worker with two threads; its threads use their own DB connections, hence transactional_db."""
    worker = start_worker(stub_broker)
    yield worker
    worker.stop()


def start_worker(broker: StubBroker) -> dramatiq.Worker:
    """A started worker with two threads, for tests that must prepare the ledger before it runs."""
    worker = dramatiq.Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    return worker


def run_all(broker: StubBroker, worker: dramatiq.Worker, *queues: str, timeout_ms: int = 20_000) -> None:
    """Process everything on `queues` (default: all), including delayed retries, without raising."""
    for queue in queues or broker.get_declared_queues():
        broker.join(queue, timeout=timeout_ms, fail_fast=False)
    worker.join()
