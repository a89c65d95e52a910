"""Database connections of worker and consumer threads: replaced when unusable, retried through outages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

#: Errors of the connection, not of the data: the same write may succeed on a new connection.
CONNECTION_ERRORS = (OperationalError, InterfaceError)


def connection_reset_if_unusable() -> bool:
    """Replace this thread's connections that cannot take a new transaction; True if one was replaced.

    A time limit, a soft time limit or a shutdown is raised into the worker thread
    asynchronously: it can land inside a query, a transaction or a psycopg wait, and leave the
    connection mid-query or mid-transaction. Recording the outcome on it would fail ("can't
    change 'autocommit' now"), so its running query is cancelled, it is closed, and the next query
    opens a fresh one. PostgreSQL rolls back the actor's open transaction when the connection
    closes; a COMMIT it had already received completes.
    """
    replaced = False
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or not _unusable(conn):
            continue
        _cancel_running_query(conn.connection)
        try:
            conn.connection.close()  # the raw connection: Django's close() refuses mid-transaction
        except Exception:
            logger.debug("Closing an unusable connection failed.", exc_info=True)
        del connections[conn.alias]  # a fresh wrapper, with no transaction state left over
        replaced = True
        logger.warning(
            "Replaced the %s database connection an interrupted actor left unusable.",
            conn.alias,
            extra={"action": "db_connection_replaced"},
        )
    return replaced


def _cancel_running_query(raw: Any) -> None:
    """Stop a query the interrupted actor left running: closing alone lets it run on, holding locks."""
    info = getattr(raw, "info", None)
    if info is None:
        return
    from psycopg.pq import TransactionStatus

    if info.transaction_status == TransactionStatus.ACTIVE:
        try:
            raw.cancel_safe(timeout=2.0)
        except Exception:
            logger.debug("Cancelling the interrupted query failed.", exc_info=True)


def _unusable(conn: Any) -> bool:
    # Between messages no transaction may be open: the actor has returned.
    if conn.in_atomic_block or conn.needs_rollback or conn.closed_in_transaction:
        return True
    raw = conn.connection
    info = getattr(raw, "info", None)
    if info is not None:  # psycopg 3
        from psycopg.pq import TransactionStatus

        return bool(raw.closed or raw.broken or info.transaction_status != TransactionStatus.IDLE)
    return bool(getattr(raw, "in_transaction", False)) and conn.get_autocommit()


def durably[T](what: str, call: Callable[[], T], *, wait_s: float | None = None) -> T:
    """Run a ledger write, on a fresh connection when needed, retrying while the database is unreachable.

    Connection errors are retried for up to JOBS_DB_OUTAGE_WAIT_S (or `wait_s`); a database error
    that left the connection unusable is retried once on a new one; any other error (bad data, a
    bug) is raised at once: waiting would not fix it.
    """
    deadline = time.monotonic() + (settings.JOBS_DB_OUTAGE_WAIT_S if wait_s is None else wait_s)
    pause = 0.5
    retried_state = False
    connection_reset_if_unusable()
    while True:
        try:
            return call()
        except CONNECTION_ERRORS as exc:
            connections.close_all()  # this thread's connections; the next query reconnects
            if time.monotonic() + pause > deadline:
                raise
            logger.warning("Database unavailable while %s (%s); retrying in %.1f s.", what, exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
        except DatabaseError:
            if retried_state or not connection_reset_if_unusable():
                raise
            retried_state = True


def with_reconnect[T](call: Callable[[], T]) -> T:
    """Run `call` from a thread that Django's request cycle never tidies (consumer threads, the
    scheduler, keepers): on a connection error (PostgreSQL restarted) it reconnects and tries once more.

    Such a thread would otherwise keep a broken connection for ever. The healthy case costs nothing
    extra. Inside a caller's transaction (actor.send() in an atomic block) the connection is the
    caller's to manage, and the error is raised.
    """
    try:
        return call()
    except CONNECTION_ERRORS:
        if any(conn.in_atomic_block for conn in connections.all(initialized_only=True)):
            raise
        connections.close_all()
        return call()
