"""A live ASGI server for the api tier: gunicorn with one uvicorn worker, as scripts/run serves web."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import psycopg
from django.conf import settings
from django.db import connection

from tests.live import ARTIFACTS, ROOT, worker_database_url

#: The server's PostgreSQL connections carry this application_name, so a test can count them.
APPLICATION_NAME = "jobs-api-test-web"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_database_url() -> str:
    """DATABASE_URL of the test database, naming the server's connections in pg_stat_activity."""
    parts = urlsplit(worker_database_url())
    query = [*parse_qsl(parts.query), ("application_name", APPLICATION_NAME)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _database() -> psycopg.Connection:
    """A connection to the test database of its own: Django's must not be used from a helper thread."""
    return psycopg.connect(worker_database_url(), autocommit=True)


def server_connections() -> list[dict[str, Any]]:
    """The server's PostgreSQL connections now (its DATABASE_URL names them), from pg_stat_activity."""
    with _database() as conn:
        rows = conn.execute(
            "SELECT pid, state, backend_start FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = %s",
            [connection.settings_dict["NAME"], APPLICATION_NAME],
        ).fetchall()
    return [{"pid": pid, "state": state, "since": str(since)} for pid, state, since in rows]


def sessions_opened() -> int:
    """Connections ever opened to the test database (PostgreSQL's statistics, flushed within a second)."""
    with _database() as conn:
        (sessions,) = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", [connection.settings_dict["NAME"]]
        ).fetchone() or (0,)
    return sessions


class ASGIServer:
    """`gunicorn project.asgi:application -k uvicorn_worker.UvicornWorker` on a free port.

    One worker process, as the event streams' reader is per process; its output goes to
    test-artifacts/api/web.log.
    """

    def __init__(self, *, tier: str = "api") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (ARTIFACTS / tier).mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / tier / "web.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 30) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DATABASE_URL": server_database_url(),
            "RABBITMQ_URL": settings.RABBITMQ_URL,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "LOG_LEVEL": "INFO",
            # The schemathesis run sends thousands of POSTs: throttling would answer most with 429
            # and hide the endpoints' own checks (the throttle has a unit test of its own).
            "JOBS_API_SUBMIT_RATE": "100000/minute",
        }
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [
                    str(ROOT / ".venv/bin/gunicorn"),
                    "project.asgi:application",
                    "-k",
                    "uvicorn_worker.UvicornWorker",
                    "--workers",
                    "1",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--access-logfile",
                    "-",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        """Until /healthz answers 200 (the worker has booted and reaches the test database)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the web server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=2)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise AssertionError(f"/healthz did not answer 200 within {timeout} s ({last}):\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to gunicorn's master (a graceful stop), SIGKILL to its group if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
