"""A job's status and progress changes as server-sent events, live, until the job ends.

Frames of a stream:

    id: 42            one per status change (a JobEvent; its id is what Last-Event-ID resumes from)
    event: status
    data: {"status": "running", "from_status": "queued", "attempt": 1, "at": "...", "note": ""}

    event: progress   whenever the job's progress changes (no id: only the latest progress matters)
    data: {"current": 3, "total": 10, "percent": 30.0, "message": "..."}

    event: end        once the job is final; the stream then closes
    data: {"status": "succeeded"}

One reader per web process (per event loop) polls the ledger for every open stream at once: two
queries per JOBS_API_EVENTS_POLL_S, however many clients watch, and no thread or database
connection held by an open stream. Served over ASGI, a stream costs a coroutine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, close_old_connections, connections

from apps.jobs.models import Job, JobEvent, progress_percent

logger = logging.getLogger(__name__)

#: Milliseconds a client waits before reconnecting (sent as the stream's `retry:` field).
RECONNECT_MS = 2000


def frame(event: str, data: Any, *, event_id: int | None = None) -> str:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines += [f"event: {event}", "data: " + json.dumps(data, cls=DjangoJSONEncoder)]
    return "\n".join(lines) + "\n\n"


#: One event of the stream, as the schema documents it (`data` is JSON text).
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "Set on status events: resume after it with Last-Event-ID."},
        "event": {"type": "string", "enum": ["status", "progress", "end"]},
        "data": {
            "type": "string",
            "description": "JSON: the status change, the progress, or the final status.",
        },
        "retry": {"type": "integer"},
    },
}


@dataclass(eq=False)
class _Stream:
    job_id: str
    last_event_id: int
    progress: tuple[Any, ...] | None = None
    frames: list[str] = field(default_factory=list)
    ended: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def _read(since: dict[str, int]) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The watched jobs, then their events after the lowest id a stream has seen.

    Jobs are read first: the events read after them include every change up to the status read.
    """
    close_old_connections()  # the reader's own thread: drop a connection the database lost
    jobs = {
        str(row["id"]): dict(row)
        for row in Job.objects.filter(pk__in=since).values(
            "id", "status", "progress_current", "progress_total", "progress_message"
        )
    }
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    rows = (
        JobEvent.objects.filter(job_id__in=since, pk__gt=min(since.values()))
        .order_by("pk")
        .values("pk", "job_id", "from_status", "to_status", "attempt", "at", "note")
    )
    for row in rows:
        events[str(row["job_id"])].append(dict(row))
    return jobs, events


def _deliver(stream: _Stream, job: dict[str, Any] | None, events: list[dict[str, Any]]) -> None:
    for event in events:
        if event["pk"] > stream.last_event_id:
            stream.last_event_id = event["pk"]
            data = {key: event[key] for key in ("from_status", "attempt", "at", "note")}
            stream.frames.append(
                frame("status", {"status": event["to_status"], **data}, event_id=event["pk"])
            )
    if job is None:  # deleted (pruned) while watched
        stream.frames.append(frame("end", {"status": None, "note": "The job no longer exists."}))
        stream.ended = True
    else:
        current, total, message = job["progress_current"], job["progress_total"], job["progress_message"]
        if (current, total, message) != (stream.progress or (None, None, "")):
            stream.progress = (current, total, message)
            percent = progress_percent(current, total)
            stream.frames.append(
                frame(
                    "progress", {"current": current, "total": total, "percent": percent, "message": message}
                )
            )
        if job["status"] in Job.FINAL_STATUSES:
            stream.frames.append(frame("end", {"status": job["status"]}))
            stream.ended = True
    if stream.frames:
        stream.wake.set()


class _Reader:
    """Polls the ledger for the streams open in one event loop, while any is open.

    Its reads run on a thread of its own: one database connection for all the streams, closed when
    the last stream closes.
    """

    def __init__(self) -> None:
        self.streams: set[_Stream] = set()
        self.task: asyncio.Task[None] | None = None
        self.joined = asyncio.Event()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-events")

    def add(self, stream: _Stream) -> None:
        self.streams.add(stream)
        self.joined.set()  # read at once: a new stream's first frames should not wait a poll
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="job-events-reader")

    def remove(self, stream: _Stream) -> None:
        self.streams.discard(stream)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._poll(loop)
        finally:
            await loop.run_in_executor(self.thread, connections.close_all)

    async def _poll(self, loop: asyncio.AbstractEventLoop) -> None:
        while self.streams:
            self.joined.clear()
            streams = list(self.streams)
            since: dict[str, int] = {}
            for stream in streams:
                since[stream.job_id] = min(
                    since.get(stream.job_id, stream.last_event_id), stream.last_event_id
                )
            try:
                jobs, events = await loop.run_in_executor(self.thread, _read, since)
            except DatabaseError as exc:
                logger.warning("Cannot read job events (%s); retrying.", exc)
            except Exception:
                # Anything else too: if this loop ended, every open stream would get keep-alives forever.
                logger.exception("Reading job events failed; retrying.")
            else:
                for stream in streams:
                    if not stream.ended:
                        _deliver(stream, jobs.get(stream.job_id), events.get(stream.job_id, []))
            try:
                await asyncio.wait_for(self.joined.wait(), settings.JOBS_API_EVENTS_POLL_S)
            except TimeoutError:
                pass


_readers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Reader] = weakref.WeakKeyDictionary()


def _reader() -> _Reader:
    loop = asyncio.get_running_loop()
    reader = _readers.get(loop)
    if reader is None:
        reader = _readers[loop] = _Reader()
    return reader


async def job_event_stream(job_id: str, *, last_event_id: int = 0) -> AsyncIterator[str]:
    """The frames of a job's stream: its status changes after `last_event_id`, progress, then end."""
    stream = _Stream(job_id=job_id, last_event_id=last_event_id)
    reader = _reader()
    reader.add(stream)
    try:
        yield f"retry: {RECONNECT_MS}\n\n"
        while True:
            try:
                await asyncio.wait_for(stream.wake.wait(), settings.JOBS_API_EVENTS_KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"  # a comment: proxies and browsers keep the connection open
                continue
            stream.wake.clear()
            frames, stream.frames = stream.frames, []
            yield "".join(frames)
            if stream.ended:
                return
    finally:
        reader.remove(stream)
