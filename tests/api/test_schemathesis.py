"""The whole API against its own OpenAPI schema: schemathesis generates requests from /api/schema/.

It sends valid and invalid requests to every operation of the live server and checks each answer:
no 5xx, a status code the schema lists for the operation, the listed content type, and a body that
matches the listed schema. Its output is kept in test-artifacts/api/schemathesis.log.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission

from apps.jobs.models import Job
from tests.api.server import ASGIServer
from tests.live import ARTIFACTS, ROOT

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]
#: Test cases per operation and phase: enough to reach every documented answer; the run stays
#: within about three minutes.
MAX_EXAMPLES = 100
#: A fixed seed: a failure found once is found again by the next run.
SEED = 20_251_202
#: Seconds for one request. It also bounds the streams of jobs schemathesis submits itself (it
#: follows the ids POST /api/jobs/ answers with): it reads a stream up to its end, 20 events or this
#: long without data, and checks what it got. Every other answer comes in milliseconds.
REQUEST_TIMEOUT_S = 5
#: Under pytest-timeout's 300 s per test, so a stuck run ends with its output, not a bare timeout.
RUN_TIMEOUT_S = 240


def _text(output: bytes | str | None) -> str:
    """Output of a process killed on timeout (bytes so far, whatever `text=True` says)."""
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


@pytest.fixture
def operator(api_user: Any) -> Any:
    """api_user as an operator: it sees every job and the queues, and may ask for the users report.

    So the run reaches the answers only operators get (GET /api/queues/ is a 403 otherwise).
    """
    api_user.user_permissions.add(
        Permission.objects.get(content_type__app_label="jobs", codename="view_job"),
        Permission.objects.get(content_type__app_label="auth", codename="view_user"),
    )
    return api_user


def test_schemathesis__the_api_conforms_to_its_schema(
    server: ASGIServer, operator: Any, token: str, tmp_path: Path
) -> None:
    # Given no job waits or runs: GET /api/jobs/{id}/events/ of such a job streams until the job
    # ends, and no worker runs here to end it (the operator sees every job, not only its own).
    assert not Job.objects.exclude(status__in=Job.FINAL_STATUSES).exists()

    # When schemathesis tests every operation of the schema
    log_path = ARTIFACTS / "api" / "schemathesis.log"
    command = [
        str(ROOT / ".venv/bin/schemathesis"),
        "run",
        f"{server.url}/api/schema/",
        "--header",
        f"Authorization: Token {token}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--request-timeout",
        str(REQUEST_TIMEOUT_S),
        # No database of earlier examples: every run starts from the seed alone.
        "--generation-database",
        "none",
        "--no-color",
    ]
    started = time.monotonic()
    # In a directory of its own: schemathesis keeps the failures it found in .schemathesis/ and
    # replays them first in the next run; Hypothesis keeps a cache in .hypothesis/.
    try:
        result = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
        returncode, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as exc:
        returncode = None
        output = f"{_text(exc.stdout)}{_text(exc.stderr)}\n(killed after {RUN_TIMEOUT_S} s)"
    elapsed = time.monotonic() - started
    header = f"$ schemathesis run {server.url}/api/schema/ ... ({elapsed:.0f} s, exit {returncode})"
    log_path.write_text(f"{header}\n{output}")

    # Then it finds no failure
    tail = "\n".join(output.splitlines()[-80:])
    assert returncode == 0, (
        f"schemathesis exited with {returncode} after {elapsed:.0f} s (full output: {log_path}):\n{tail}"
    )
