"""The API reads JSON only: bounded in size and depth, without NaN or Infinity."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from apps.jobs.api.errors import PayloadTooLarge


def refuse_constant(name: str) -> None:
    """json.loads' parse_constant: NaN and Infinity are not JSON, and no database or client takes them."""
    raise ValueError(f"{name} is not valid JSON")


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


class JSONBodyParser(JSONParser):
    """JSON bodies up to JOBS_API_MAX_BODY_BYTES (else 413) nesting at most JOBS_API_MAX_JSON_DEPTH."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        limit = settings.JOBS_API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        raw = stream.read(limit + 1)  # a chunked body has no length to check up front
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=refuse_constant)
        except RecursionError:
            raise ParseError("JSON parse error - the body nests too deeply.") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        most = settings.JOBS_API_MAX_JSON_DEPTH
        if _depth(data) > most:
            raise ParseError(f"JSON parse error - the body nests deeper than {most} levels.")
        return data
