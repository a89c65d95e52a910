"""What the probe job records, and how it holds a database connection busy for diagnostics."""

from __future__ import annotations

import math
from uuid import UUID

from django.db import connection, transaction

from apps.jobs.exceptions import PermanentFailure
from apps.workloads.models import ProbeRun

#: Ways the probe can sit inside the database (db_hold): see probe_db_hold.
PROBE_DB_HOLDS = ("pg_sleep", "atomic", "cursor", "commit")
#: In "cursor" mode each fetched row sleeps this long (ms) in SQL.
PROBE_CURSOR_ROW_MS = 50


def probe_run_record(*, job_id: UUID | str | None, attempt: int) -> None:
    """Count one completed run of a probe job (nothing outside a job)."""
    if job_id is not None:
        ProbeRun.objects.create(job_id=job_id, attempt=attempt)


def probe_db_hold(*, mode: str, hold_ms: int, job_id: UUID | str | None, attempt: int) -> None:
    """Keep this thread's connection busy in PostgreSQL for about `hold_ms`, as `mode` says.

    - "pg_sleep": one query, `SELECT pg_sleep(...)`: the connection is mid-query throughout.
    - "atomic": in a transaction, record the run (ProbeRun, as probe_run_record does), then
      `SELECT pg_sleep(...)`; the row commits only if the whole hold completes, so an interrupted
      hold leaves no ProbeRun row behind.
    - "cursor": in a transaction (outside one, Django declares server-side cursors WITH HOLD and
      PostgreSQL computes every row at once), stream `generate_series` through a server-side cursor
      one row per fetch, each row sleeping PROBE_CURSOR_ROW_MS in SQL: the connection alternates
      between mid-fetch and idle in transaction.
    - "commit": in a transaction, record the run (ProbeRun) and arm a deferred trigger (on a
      temporary table) that sleeps in SQL when the transaction commits: the connection is inside
      COMMIT throughout. An interrupted COMMIT still completes in PostgreSQL (the server learns
      that the client left only when it sends the result), so the row is kept.

    An unknown mode is a PermanentFailure.
    """
    if mode not in PROBE_DB_HOLDS:
        known = ", ".join(PROBE_DB_HOLDS)
        raise PermanentFailure(f"Unknown db_hold {mode!r}; known: {known}.")
    hold_s = max(hold_ms, 0) / 1000
    if mode == "pg_sleep":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(%s)", [hold_s])
    elif mode == "atomic":
        with transaction.atomic():
            probe_run_record(job_id=job_id, attempt=attempt)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(%s)", [hold_s])
    elif mode == "commit":
        with transaction.atomic(), connection.cursor() as cursor:
            probe_run_record(job_id=job_id, attempt=attempt)
            cursor.execute(
                "CREATE OR REPLACE FUNCTION pg_temp.probe_commit_hold() RETURNS trigger"
                " LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(NEW.seconds); RETURN NULL; END $$"
            )
            cursor.execute("CREATE TEMPORARY TABLE probe_commit_hold (seconds float8) ON COMMIT DROP")
            cursor.execute(
                "CREATE CONSTRAINT TRIGGER probe_commit_hold AFTER INSERT ON probe_commit_hold"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.probe_commit_hold()"
            )
            cursor.execute("INSERT INTO probe_commit_hold VALUES (%s)", [hold_s])
    else:
        rows = max(1, math.ceil(hold_ms / PROBE_CURSOR_ROW_MS))
        with transaction.atomic(), connection.chunked_cursor() as cursor:
            cursor.execute(
                "SELECT n, pg_sleep(%s) FROM generate_series(1, %s) AS n",
                [PROBE_CURSOR_ROW_MS / 1000, rows],
            )
            while cursor.fetchmany(1):
                pass
