"""Plain views of the jobs system: liveness and readiness checks."""

from __future__ import annotations

import time

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from apps.jobs import queues
from apps.jobs.exceptions import BrokerUnavailable


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: 200 when the database answers (the broker is checked by readyz and the workers)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def _timed(check: object) -> dict[str, object]:
    started = time.monotonic()
    try:
        check()  # type: ignore[operator]
    except (DatabaseError, BrokerUnavailable) as exc:
        return {"ok": False, "error": str(exc).strip() or type(exc).__name__}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def _database_check() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database and RabbitMQ are reachable, else 503 naming which is not."""
    checks = {"database": _timed(_database_check), "broker": _timed(queues.broker_check)}
    ready = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
