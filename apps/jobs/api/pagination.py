"""Cursor pagination: constant time per page on a ledger of millions, and no COUNT(*)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request


class Cursors(CursorPagination):
    """Newest first; a cursor that is not one of ours is bad input (400), not a missing page."""

    ordering = "-created_at"
    page_size = 50

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({self.cursor_query_param: ["Not a cursor of this list."]}) from None


class JobCursorPagination(Cursors):
    page_size_query_param = "page_size"
    max_page_size = 500
