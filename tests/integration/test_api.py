"""The REST API against a live worker, the real RabbitMQ and PostgreSQL: submit, follow, cancel, queues."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import dramatiq
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import AsyncClient
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs.models import Job
from apps.workloads.models import ProbeRun
from tests.live import QUEUES, WorkerProcess, wait_for, wait_job

Status = Job.Status

#: How long the probes below sleep (ms). The worker writes progress at most once per
#: JOBS_PROGRESS_MIN_INTERVAL_S (1 s: tests.live.WorkerProcess leaves the default), and 3 s of
#: sleep gives writes at about 0.05, 1.05 and 2.05 s, then the last at 3 s.
SLEEP_MS = 3000


def api_client(username: str = "api-user", *, superuser: bool = False) -> tuple[APIClient, Token]:
    """A client authenticated with a new user's DRF token (an operator's with `superuser`)."""
    users = get_user_model().objects
    if superuser:
        user = users.create_superuser(username, f"{username}@example.com", "password")
    else:
        user = users.create_user(username, f"{username}@example.com", "password")
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client, token


def submit_probe(client: APIClient, **fields: Any) -> dict[str, Any]:
    """POST /api/jobs/ for a probe; asserts the 202 and its Location, returns the body."""
    response = client.post("/api/jobs/", {"actor": "jobs.probe", **fields}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == body["links"]["self"]
    assert response["Location"].endswith(f"/api/jobs/{body['id']}/")
    assert body["actor"] == "jobs.probe"
    assert body["source"] == Job.Source.API
    return body


def get_json(client: APIClient, url: str) -> dict[str, Any] | list[Any]:
    response = client.get(url)
    assert response.status_code == 200, response.content
    return response.json()


def collapsed(values: list[Any]) -> list[Any]:
    """`values` without consecutive repeats."""
    return [value for index, value in enumerate(values) if index == 0 or value != values[index - 1]]


def test_api__a_job_submitted_through_the_api_runs_on_the_worker_with_live_progress(
    worker: WorkerProcess,
) -> None:
    client, _ = api_client()
    submitted = submit_probe(client, kwargs={"sleep_ms": SLEEP_MS})
    # The answer is written inside the request's transaction, before the publish after its commit.
    assert submitted["status"] == Status.PENDING
    assert submitted["kwargs"] == {"sleep_ms": SLEEP_MS}
    location = submitted["links"]["self"]

    # Poll the job's URL as a client would, recording what it shows, until it is final.
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while True:
        job = get_json(client, location)
        assert isinstance(job, dict)
        seen.append(job)
        if job["status"] in Job.FINAL_STATUSES:
            break
        assert time.monotonic() < deadline, f"the job never ended: {collapsed([s['status'] for s in seen])}"
        time.sleep(0.1)

    statuses = collapsed([job["status"] for job in seen])
    # "queued" may be skipped: the publish is confirmed before the POST returns, but the worker may
    # be faster still.
    assert statuses in (
        [Status.PENDING, Status.QUEUED, Status.RUNNING, Status.SUCCEEDED],
        [Status.QUEUED, Status.RUNNING, Status.SUCCEEDED],
        [Status.PENDING, Status.RUNNING, Status.SUCCEEDED],
        [Status.RUNNING, Status.SUCCEEDED],
    ), statuses

    # While it runs, its progress moves: at least two values strictly between 0 and 100 %.
    running = [job["progress"] for job in seen if job["status"] == Status.RUNNING]
    reported = [progress for progress in running if progress["current"] is not None]
    assert reported, f"no progress was shown while running: {running}"
    for progress in reported:
        assert progress["total"] == SLEEP_MS, progress
        assert 0 < progress["current"] <= SLEEP_MS, progress
        assert progress["percent"] == min(100.0, 100.0 * progress["current"] / SLEEP_MS), progress
        assert progress["message"] == "sleeping", progress
    currents = [progress["current"] for progress in reported]
    assert currents == sorted(currents), f"progress went backwards: {currents}"
    moving = {progress["current"] for progress in reported if 0 < progress["percent"] < 100}
    assert len(moving) >= 2, f"progress did not move while running: {collapsed(currents)}"
    # Its one attempt shows while it runs, not finished yet.
    for job in seen:
        if job["status"] == Status.RUNNING:
            assert [(a["number"], a["outcome"], a["finished_at"]) for a in job["attempts"]] == [
                (1, "running", None)
            ], job["attempts"]

    # Then it succeeded, with its result, one succeeded attempt, and its end time.
    final = seen[-1]
    assert final["status"] == Status.SUCCEEDED
    assert final["error"] is None
    assert final["result"]["attempt"] == 1
    assert final["result"]["slept_ms"] >= SLEEP_MS
    assert set(final["result"]) == {"attempt", "slept_ms"}
    assert final["progress"] == {
        "current": SLEEP_MS,
        "total": SLEEP_MS,
        "percent": 100.0,
        "message": "sleeping",
    }
    assert final["attempt_count"] == 1
    [attempt] = final["attempts"]
    assert attempt["number"] == 1
    assert attempt["outcome"] == "succeeded"
    assert isinstance(attempt["duration_ms"], int) and attempt["duration_ms"] >= SLEEP_MS
    assert attempt["finished_at"] is not None and attempt["error_class"] == ""
    assert final["finished_at"] is not None and final["started_at"] is not None
    assert final["duration_ms"] >= SLEEP_MS
    # The API shows what the ledger holds.
    assert Job.objects.get(pk=final["id"]).status == Status.SUCCEEDED
    assert ProbeRun.objects.filter(job_id=final["id"]).count() == 1


@dataclass
class Frame:
    """One server-sent event, with when it arrived (time.monotonic())."""

    event: str
    data: Any
    id: int | None
    arrived: float


def parse_frame(text: str, arrived: float) -> Frame | None:
    """A frame's fields (id, event, data); None for a frame with no data (retry:, a comment)."""
    fields: dict[str, str] = {}
    for line in text.split("\n"):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
    if "data" not in fields:
        return None
    event_id = fields.get("id")
    return Frame(
        event=fields.get("event", "message"),
        data=json.loads(fields["data"]),
        id=int(event_id) if event_id is not None else None,
        arrived=arrived,
    )


@dataclass
class Stream:
    status_code: int = 0
    headers: dict[str, str] | None = None
    frames: list[Frame] | None = None
    closed: bool = False


async def read_event_stream(url: str, token: str, stream: Stream) -> None:
    """GET the stream over the ASGI handler and read its frames until the server closes it."""
    # The header goes with the request: AsyncClient(headers=...) becomes "Http-Authorization" (Django 6.1).
    response = await AsyncClient().get(url, headers={"Authorization": f"Token {token}"})
    stream.status_code = response.status_code
    stream.headers = dict(response.headers)
    stream.frames = []
    if not response.streaming:
        stream.closed = True
        return
    buffer = ""
    async for chunk in response.streaming_content:
        buffer += chunk.decode() if isinstance(chunk, bytes) else str(chunk)
        while "\n\n" in buffer:
            text, buffer = buffer.split("\n\n", 1)
            frame = parse_frame(text, time.monotonic())
            if frame is not None:
                stream.frames.append(frame)
    assert buffer == "", f"the stream ended inside a frame: {buffer!r}"
    stream.closed = True


def follow(url: str, token: str, *, timeout: float) -> Stream:
    stream = Stream()

    async def bounded() -> None:
        await asyncio.wait_for(read_event_stream(url, token, stream), timeout)

    try:
        async_to_sync(bounded)()
    except TimeoutError:
        frames = [(frame.event, frame.data) for frame in stream.frames or []]
        raise AssertionError(
            f"the event stream did not close within {timeout} s; it sent {len(frames)} frames, "
            f"the first: {frames[:12]}, the last: {frames[-3:]}"
        ) from None
    return stream


def test_api__the_event_stream_shows_the_same_live(worker: WorkerProcess) -> None:
    client, token = api_client()
    submitted = submit_probe(client, kwargs={"sleep_ms": SLEEP_MS})
    opened = time.monotonic()

    stream = follow(submitted["links"]["events"], token.key, timeout=30)

    assert stream.status_code == 200
    assert stream.headers is not None and stream.headers["Content-Type"].startswith("text/event-stream")
    assert stream.headers["Cache-Control"] == "no-cache"
    assert stream.closed
    frames = stream.frames
    assert frames, "the stream sent nothing"
    summary = [(frame.event, frame.data.get("status") or frame.data.get("current")) for frame in frames]

    # Status frames: every change in order, each with its event id, from the status before it.
    statuses = [frame for frame in frames if frame.event == "status"]
    names = [frame.data["status"] for frame in statuses]
    assert names in (
        [Status.PENDING, Status.QUEUED, Status.RUNNING, Status.SUCCEEDED],
        [Status.PENDING, Status.RUNNING, Status.SUCCEEDED],
    ), summary
    ids = [frame.id for frame in statuses if frame.id is not None]
    assert len(ids) == len(statuses), summary
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    # (The ledger stores the creation event's from_status blank.)
    assert [frame.data["from_status"] for frame in statuses] == ["", *names[:-1]], summary
    job = Job.objects.get(pk=submitted["id"])
    assert list(job.events.order_by("pk").values_list("pk", "to_status")) == list(
        zip(ids, names, strict=True)
    )

    # Progress frames between running and succeeded, strictly between 0 and 100 %, without ids.
    index = {frame.data["status"]: frames.index(frame) for frame in statuses}
    between = frames[index[Status.RUNNING] + 1 : index[Status.SUCCEEDED]]
    progress = [frame.data for frame in between if frame.event == "progress"]
    assert any(0 < data["percent"] < 100 for data in progress), summary
    for data in progress:
        assert data["total"] == SLEEP_MS and 0 < data["current"] <= SLEEP_MS, data
        assert data["percent"] == min(100.0, 100.0 * data["current"] / SLEEP_MS), data
    assert all(frame.id is None for frame in frames if frame.event == "progress"), summary
    assert not [frame for frame in frames if frame.event not in ("status", "progress", "end")], summary

    # It was live: the end came while the stream was open, seconds after it had shown the job running.
    running_shown = frames[index[Status.RUNNING]].arrived
    assert frames[index[Status.SUCCEEDED]].arrived - running_shown >= 1.0, (
        "the stream replayed a finished job instead of following it live"
    )
    assert running_shown - opened < SLEEP_MS / 1000, "the stream showed the job running too late"

    # Then one end frame, last, and the server closed the stream by itself.
    assert [frame.event for frame in frames].count("end") == 1, summary
    assert frames[-1].event == "end" and frames[-1].data == {"status": Status.SUCCEEDED}, summary
    assert job.status == Status.SUCCEEDED


def test_api__cancel_through_the_api_stops_a_job_whose_message_is_already_in_rabbitmq(
    worker: WorkerProcess, broker: dramatiq.Broker
) -> None:
    client, _ = api_client()
    delay_ms = 3000
    submitted = submit_probe(client, kwargs={"sleep_ms": 100}, delay_ms=delay_ms)
    submitted_at = time.monotonic()
    job_id = submitted["id"]
    # The publish after the request's commit was confirmed: the message is in RabbitMQ (its delay queue).
    assert Job.objects.get(pk=job_id).status == Status.QUEUED

    response = client.post(f"/api/jobs/{job_id}/cancel/", format="json")
    assert response.status_code == 200, response.content
    cancelled = response.json()
    assert cancelled["id"] == job_id
    assert cancelled["status"] == Status.CANCELLED
    assert cancelled["finished_at"] is not None
    assert cancelled["attempts"] == []

    # When the delay is over, the worker receives the message and drops it.
    wait_for(
        lambda: f"Job {job_id} is cancelled; its duplicate delivery is dropped." in worker.log(),
        timeout=20,
        message="the worker never received the cancelled job's message",
    )
    assert time.monotonic() - submitted_at >= delay_ms / 1000 - 0.5
    time.sleep(2)  # a run it started anyway would have finished by now (a 100 ms probe)

    job = Job.objects.get(pk=job_id)
    assert job.status == Status.CANCELLED
    assert job.attempts == 0
    assert job.attempt_set.count() == 0
    assert job.started_at is None
    assert not ProbeRun.objects.filter(job_id=job_id).exists()
    shown = get_json(client, f"/api/jobs/{job_id}/")
    assert isinstance(shown, dict)
    assert (shown["status"], shown["attempt_count"], shown["attempts"], shown["result"]) == (
        Status.CANCELLED,
        0,
        [],
        None,
    )
    # The dropped message was acknowledged, not dead-lettered.
    wait_for(
        lambda: broker.get_queue_message_counts("default") == (0, 0, 0),
        timeout=10,
        message=f"messages left in RabbitMQ: {broker.get_queue_message_counts('default')}",
    )


def test_api__queues_show_rabbitmq_depths_and_running_jobs(worker: WorkerProcess) -> None:
    client, _ = api_client("operator", superuser=True)

    def queues() -> dict[str, dict[str, Any]]:
        body = get_json(client, "/api/queues/")
        assert isinstance(body, list)
        by_name = {entry["name"]: entry for entry in body}
        assert len(by_name) == len(body), body
        return by_name

    idle = queues()
    assert sorted(idle) == sorted(QUEUES), idle
    for name, entry in idle.items():
        assert set(entry) == {"name", "ready", "delayed", "dead", "consumers", "running"}, entry
        for count in ("ready", "delayed", "dead", "consumers", "running"):
            assert type(entry[count]) is int, (name, count, entry)
        assert entry["consumers"] >= 1, entry  # the live worker consumes every queue
        assert (entry["ready"], entry["delayed"], entry["dead"], entry["running"]) == (0, 0, 0, 0), entry

    submitted = submit_probe(client, kwargs={"sleep_ms": SLEEP_MS})
    wait_job(submitted["id"], Status.RUNNING, timeout=20)
    during = queues()
    assert Job.objects.get(pk=submitted["id"]).status == Status.RUNNING, "the probe ended before the read"
    assert during["default"]["running"] == 1, during
    assert all(during[name]["running"] == 0 for name in QUEUES if name != "default"), during
    assert during["default"]["consumers"] >= 1, during

    assert wait_job(submitted["id"]).status == Status.SUCCEEDED
    assert queues()["default"]["running"] == 0
