"""GET /api/jobs/{id}/events/: server-sent events over the live ASGI server.

A stream is a coroutine waiting on the event loop; one reader per process polls the ledger for all
of them. These tests hold real streams open against the real server to check that the design holds:
open streams block nothing and hold no database connection each, a stream ends with its job, and a
reconnecting client resumes where it left off.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx

from apps.jobs.models import Job
from tests.api.server import ASGIServer, server_connections
from tests.api.sse import EventStream, is_end, is_status

#: Seconds a whole scenario may take; a server that blocks fails the test instead of hanging it.
SCENARIO_TIMEOUT_S = 60
#: Streams open at once in the load test.
STREAMS = 100


def events_url(server: ASGIServer, job: Job) -> str:
    return f"{server.url}/api/jobs/{job.pk}/events/"


def stream_client() -> httpx.AsyncClient:
    """A client with room for every stream of the load test (httpx allows 100 connections by default)."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        timeout=httpx.Timeout(10, read=30),  # a stream is silent up to the 15 s keep-alive
    )


def test_event_streams__100_open_do_not_block_other_requests(
    server: ASGIServer, auth: dict[str, str], queued_job: Job
) -> None:
    """With 100 streams open, a job read and the readiness check answer at once, on few connections.

    Under WSGI (or a thread per stream) every open stream holds a worker thread and, once it queried
    the ledger, a database connection: 100 followers would block the site and exhaust PostgreSQL.
    """

    async def open_stream(client: httpx.AsyncClient, streams: contextlib.AsyncExitStack) -> None:
        response = await streams.enter_async_context(
            client.stream("GET", events_url(server, queued_job), headers=auth)
        )
        assert response.status_code == 200, (await response.aread())[:500]
        assert response.headers["content-type"].startswith("text/event-stream")
        await EventStream(response).until(is_status())

    async def scenario() -> tuple[float, httpx.Response, httpx.Response, list[dict[str, Any]]]:
        async with stream_client() as client, httpx.AsyncClient(timeout=10) as other:
            async with contextlib.AsyncExitStack() as streams:
                # Given 100 streams opened at once, each past its first status frame
                await asyncio.gather(*(open_stream(client, streams) for _ in range(STREAMS)))
                # When another client reads the job and the readiness check
                started = time.monotonic()
                detail = await other.get(f"{server.url}/api/jobs/{queued_job.pk}/", headers=auth)
                elapsed = time.monotonic() - started
                ready = await other.get(f"{server.url}/readyz")
                connections = await asyncio.to_thread(server_connections)
            # (leaving the exit stack closed the 100 streams: the server must carry on)
            healthy = await other.get(f"{server.url}/healthz")
            assert healthy.status_code == 200, healthy.text[:500]
        return elapsed, detail, ready, connections

    elapsed, detail, ready, connections = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))

    # Then they answer at once, from a server that holds a few connections, not one per stream
    assert detail.status_code == 200, detail.text[:500]
    assert detail.json()["id"] == str(queued_job.pk)
    assert elapsed < 5, f"GET /api/jobs/{{id}}/ took {elapsed:.2f} s with {STREAMS} streams open"
    assert ready.status_code == 200, ready.text[:500]
    assert len(connections) < 20, (
        f"the server held {len(connections)} PostgreSQL connections with {STREAMS} streams open: "
        f"{connections}"
    )


def test_event_stream__ends_when_the_job_is_cancelled(
    server: ASGIServer, auth: dict[str, str], queued_job: Job
) -> None:
    """Cancelling the job through the API ends its open stream: a cancelled status, `end`, then EOF."""

    async def scenario() -> tuple[EventStream, httpx.Response, Any]:
        async with stream_client() as client:
            async with client.stream("GET", events_url(server, queued_job), headers=auth) as response:
                assert response.status_code == 200, (await response.aread())[:500]
                stream = EventStream(response)
                # Given an open stream that has shown the job queued
                await stream.until(is_status(Job.Status.QUEUED))
                # When the job is cancelled through the API
                cancel = await client.post(f"{server.url}/api/jobs/{queued_job.pk}/cancel/", headers=auth)
                # Then the stream shows it cancelled, ends, and the server closes it
                await stream.until(is_status(Job.Status.CANCELLED))
                end = await stream.until(is_end)
                after_end = await stream.next()
        return stream, cancel, (end, after_end)

    stream, cancel, (end, after_end) = asyncio.run(asyncio.wait_for(scenario(), SCENARIO_TIMEOUT_S))

    assert cancel.status_code == 200, cancel.text[:500]
    assert cancel.json()["status"] == Job.Status.CANCELLED
    assert [status for _, status in stream.statuses()] == [
        Job.Status.PENDING,
        Job.Status.QUEUED,
        Job.Status.CANCELLED,
    ]
    assert end.data["status"] == Job.Status.CANCELLED
    assert after_end is None, f"the stream went on after `end`: {after_end}"


def test_event_stream__resumes_after_last_event_id(
    server: ASGIServer, auth: dict[str, str], queued_job: Job
) -> None:
    """A client reconnecting with Last-Event-ID gets only the status events after that one."""

    async def first_connection() -> list[tuple[int | None, str]]:
        async with stream_client() as client:
            async with client.stream("GET", events_url(server, queued_job), headers=auth) as response:
                assert response.status_code == 200, (await response.aread())[:500]
                stream = EventStream(response)
                await stream.until(is_status(Job.Status.QUEUED))
                return stream.statuses()

    async def reconnect(last_event_id: int) -> EventStream:
        async with stream_client() as client:
            headers = {**auth, "Last-Event-ID": str(last_event_id)}
            async with client.stream("GET", events_url(server, queued_job), headers=headers) as response:
                assert response.status_code == 200, (await response.aread())[:500]
                stream = EventStream(response)
                await stream.until(is_end)
                return stream

    # Given a client that saw the job pending, then queued, and lost its connection
    seen = asyncio.run(asyncio.wait_for(first_connection(), SCENARIO_TIMEOUT_S))
    assert [status for _, status in seen] == [Job.Status.PENDING, Job.Status.QUEUED]
    (pending_id, _), (queued_id, _) = seen
    assert pending_id is not None and queued_id is not None and pending_id < queued_id
    # ... and the job was cancelled meanwhile
    cancel = httpx.post(f"{server.url}/api/jobs/{queued_job.pk}/cancel/", headers=auth, timeout=10)
    assert cancel.status_code == 200, cancel.text[:500]

    # When it reconnects with the id of the first event it saw
    stream = asyncio.run(asyncio.wait_for(reconnect(pending_id), SCENARIO_TIMEOUT_S))

    # Then it gets the later events only, in order, and the stream ends
    statuses = stream.statuses()
    assert [status for _, status in statuses] == [Job.Status.QUEUED, Job.Status.CANCELLED], statuses
    assert statuses[0][0] == queued_id
    assert all(event_id is not None and event_id > pending_id for event_id, _ in statuses)
