"""Content negotiation for endpoints whose success answers itself (an event stream, a file)."""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request


class AnswersItself(BaseContentNegotiation):
    """The view returns its own response (text/event-stream, text/csv) whatever the client accepts;
    DRF renders only errors, and those are always JSON, in the shape of every other error."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type
