"""Reading server-sent events from an httpx streaming response, frame by frame."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Frame:
    event: str
    data: Any
    id: int | None = None


class EventStream:
    """The frames of a text/event-stream answer; comments (keep-alives) and `retry:` are skipped."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.frames: list[Frame] = []

    async def next(self) -> Frame | None:
        """The next frame, or None once the server has closed the stream."""
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                fields[name] = f"{fields[name]}\n{value}" if name == "data" and name in fields else value
                continue
            if "event" in fields or "data" in fields:
                frame = Frame(
                    event=fields.get("event", "message"),
                    data=json.loads(fields["data"]) if "data" in fields else None,
                    id=int(fields["id"]) if "id" in fields else None,
                )
                self.frames.append(frame)
                return frame
            fields = {}
        return None

    async def until(self, matches: Callable[[Frame], bool]) -> Frame:
        """Read up to the first frame that `matches`; the stream must not end before it."""
        while (frame := await self.next()) is not None:
            if matches(frame):
                return frame
        raise AssertionError(f"the stream ended without the awaited frame; it sent {self.frames}")

    def statuses(self) -> list[tuple[int | None, str]]:
        """(id, status) of every `status` frame read so far."""
        return [(frame.id, frame.data["status"]) for frame in self.frames if frame.event == "status"]


def is_status(status: str | None = None) -> Callable[[Frame], bool]:
    return lambda frame: frame.event == "status" and (status is None or frame.data["status"] == status)


def is_end(frame: Frame) -> bool:
    return frame.event == "end"
