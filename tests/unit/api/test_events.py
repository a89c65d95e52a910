"""GET /api/jobs/{id}/events/: a job's status and progress as server-sent events, until it ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import AsyncClient
from rest_framework.authtoken.models import Token

from apps.jobs import services
from apps.jobs.models import Job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("stub_broker")]


def submitted(user: Any) -> Job:
    """A probe job as the API would write it: pending, then queued once its publish is confirmed."""
    return services.job_submit(actor="jobs.probe", requested_by=user)


def parse(text: str) -> list[dict[str, Any]]:
    """SSE frames as dicts of their fields (data decoded), comments and the retry hint left out."""
    frames = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
        if "event" in fields:
            fields["data"] = json.loads(fields["data"])
            frames.append(fields)
    return frames


async def read_stream(
    user: Any, job_id: Any, *, last_event_id: str | None = None, until: Callable[..., Any] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Open the stream as `user` and read it until it closes (or `until` runs after the first frames)."""
    token = await sync_to_async(lambda: Token.objects.get_or_create(user=user)[0].key)()
    headers = {"Authorization": f"Token {token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    response = await AsyncClient().get(f"/api/jobs/{job_id}/events/", headers=headers)
    if not response.streaming:
        return response.status_code, []
    text = ""

    async def consume() -> None:
        nonlocal text, until
        async for chunk in response.streaming_content:
            text += chunk.decode()
            if until is not None and "event: status" in text:
                action, until = until, None
                await sync_to_async(action)()

    await asyncio.wait_for(consume(), timeout=20)
    return response.status_code, parse(text)


def test_events__of_a_finished_job_replay_its_history_then_end(user: Any) -> None:
    job = submitted(user)
    services.job_cancel(job_id=job.pk)

    status, frames = async_to_sync(read_stream)(user, job.pk)

    assert status == 200
    assert [(frame["event"], frame["data"]["status"]) for frame in frames] == [
        ("status", "pending"),
        ("status", "queued"),
        ("status", "cancelled"),
        ("end", "cancelled"),
    ]
    assert int(frames[0]["id"]) < int(frames[1]["id"]) < int(frames[2]["id"]) and "id" not in frames[3]
    assert frames[2]["data"]["from_status"] == "queued"


def test_events__follow_a_job_live_until_it_ends(user: Any) -> None:
    job = submitted(user)

    def work_on_it() -> None:
        # As a worker's progress.report() writes it (the stream reads the ledger, not the worker).
        Job.objects.filter(pk=job.pk).update(progress_current=1, progress_total=4, progress_message="first")
        services.job_cancel(job_id=job.pk)

    # The job changes only once the stream has shown its first frames.
    _, frames = async_to_sync(read_stream)(user, job.pk, until=work_on_it)

    statuses = [frame["data"]["status"] for frame in frames if frame["event"] == "status"]
    assert statuses == ["pending", "queued", "cancelled"]
    assert frames[-1] == {"event": "end", "data": {"status": "cancelled"}}
    progress = [frame["data"] for frame in frames if frame["event"] == "progress"]
    assert progress == [{"current": 1, "total": 4, "percent": 25.0, "message": "first"}]


def test_events__resume_after_last_event_id(user: Any) -> None:
    job = submitted(user)
    services.job_cancel(job_id=job.pk)
    _, frames = async_to_sync(read_stream)(user, job.pk)

    _, resumed = async_to_sync(read_stream)(user, job.pk, last_event_id=frames[1]["id"])

    assert [(frame["event"], frame["data"]["status"]) for frame in resumed] == [
        ("status", "cancelled"),
        ("end", "cancelled"),
    ]


@pytest.mark.parametrize("value", ["abc", "-1", "9" * 30])
def test_events__a_malformed_last_event_id_is_400(
    user: Any, job_factory: Callable[..., Job], value: str
) -> None:
    job = job_factory(status=Job.Status.PENDING, requested_by=user)
    status, _ = async_to_sync(read_stream)(user, job.pk, last_event_id=value)
    assert status == 400
