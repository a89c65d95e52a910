"""The live ASGI server and PostgreSQL: what serving Django over ASGI costs in database connections."""

from __future__ import annotations

import asyncio
import time

import httpx

from apps.jobs.models import Job
from tests.api.server import ASGIServer, sessions_opened

#: Concurrent requests of the burst: below PostgreSQL's default max_connections (100), so that the
#: burst shows the cost without making other connections of this run fail.
BURST = 50


def test_requests__share_database_connections(
    server: ASGIServer, auth: dict[str, str], queued_job: Job
) -> None:
    """A burst of concurrent requests opens a few database connections, not one per request.

    Django runs a sync view under ASGI on a thread of the request's own (asgiref's
    ThreadSensitiveContext) and keeps connections per thread: without the pool the ASGI entry point
    turns on, each request would connect anew and a burst of N requests hold N connections -- past
    PostgreSQL's max_connections, requests fail with "too many clients".
    """

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=30) as client:
            url = f"{server.url}/api/jobs/{queued_job.pk}/"
            return await asyncio.gather(*(client.get(url, headers=auth) for _ in range(BURST)))

    # Given a server that has served a request already (its first connection is made)
    assert httpx.get(f"{server.url}/api/jobs/{queued_job.pk}/", headers=auth, timeout=10).status_code == 200
    time.sleep(1.5)  # PostgreSQL flushes session statistics at most once a second
    before = sessions_opened()

    # When 50 clients read a job at the same time
    responses = asyncio.run(burst())
    time.sleep(1.5)
    opened = sessions_opened() - before - 1  # (minus the connection counting them)

    # Then every one is answered, and the server opened a few connections for them
    assert [response.status_code for response in responses] == [200] * BURST
    assert opened < 20, f"the server opened {opened} PostgreSQL connections for {BURST} concurrent requests"
