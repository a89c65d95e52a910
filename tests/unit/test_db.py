"""Worker-thread connections: one an interrupted actor left unusable is replaced before the ledger writes."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from apps.jobs import db
from apps.jobs.models import Job


def _in_a_thread(body) -> list[object]:
    """Run `body` in a thread of its own (with its own connection), returning what it appended."""
    out: list[object] = []

    def run() -> None:
        try:
            body(out)
        except BaseException as exc:  # reported to the test
            out.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return out


@pytest.mark.django_db(transaction=True)
def test_connection_reset_if_unusable__replaces_a_connection_left_inside_a_transaction() -> None:
    def body(out: list[object]) -> None:
        # Given an actor interrupted inside transaction.atomic(), its block never exited
        atomic = transaction.atomic()
        atomic.__enter__()
        Job.objects.count()
        # When the ledger is about to record the outcome
        out.append(db.connection_reset_if_unusable())
        # Then it writes on a fresh connection, and nothing of the actor's transaction is left
        with transaction.atomic():
            out.append(Job.objects.count())
        out.append(connection.in_atomic_block)

    assert _in_a_thread(body) == [True, 0, False]


@pytest.mark.django_db(transaction=True)
def test_connection_reset_if_unusable__keeps_a_healthy_connection() -> None:
    def body(out: list[object]) -> None:
        Job.objects.count()
        raw = connection.connection
        out.append(db.connection_reset_if_unusable())
        out.append(connection.connection is raw)

    assert _in_a_thread(body) == [False, True]
