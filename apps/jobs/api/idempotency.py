"""Idempotency-Key on POST: a repeated request gets the first answer instead of a second job.

Like Stripe's: the key is the client's, scoped to its user; the same key with a different method,
path or body is refused (422). The record is written in the same transaction as the job, so a
crash between the two leaves neither, and a concurrent repeat waits on the key's unique index until
the first commits, then replays its answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.jobs.api.access import requester
from apps.jobs.api.errors import IdempotencyKeyReused
from apps.jobs.models import IdempotentRequest

HEADER = "Idempotency-Key"


def _key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    longest = IdempotentRequest._meta.get_field("key").max_length or 255
    if not key or len(key) > longest or not key.isprintable():
        raise serializers.ValidationError({HEADER: [f"The key must be 1 to {longest} printable characters."]})
    return key


def _fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def respond_once(request: Request, answer: Callable[[], Response]) -> Response:
    """`answer()` in a transaction, or the stored answer of an earlier request with the same key."""
    key = _key(request)
    if key is None:
        with transaction.atomic():
            return answer()
    fingerprint = _fingerprint(request)
    user_id = requester(request).pk
    expired = timezone.now() - timedelta(hours=settings.JOBS_API_IDEMPOTENCY_HOURS)
    with transaction.atomic():
        # A key past its retention is free again, whether or not the daily pruning has run yet.
        IdempotentRequest.objects.filter(user_id=user_id, key=key, created_at__lt=expired).delete()
        try:
            with transaction.atomic():
                record = IdempotentRequest.objects.create(
                    user_id=user_id,
                    key=key,
                    fingerprint=fingerprint,
                    response_status=0,
                    response_body={},
                )
        except IntegrityError:
            return _replay(request, key, fingerprint)
        response = answer()
        if response.status_code >= 400:
            transaction.set_rollback(True)  # the key stays free for a corrected request
            return response
        record.response_status = response.status_code
        record.response_body = json.loads(JSONRenderer().render(response.data))
        record.response_location = response.headers.get("Location", "")
        record.save(update_fields=["response_status", "response_body", "response_location"])
    return response


def _replay(request: Request, key: str, fingerprint: str) -> Response:
    record = IdempotentRequest.objects.get(user_id=requester(request).pk, key=key)
    if record.fingerprint != fingerprint:
        raise IdempotencyKeyReused(
            f"The Idempotency-Key {key!r} was used with a different request; use a new key for this one."
        )
    headers: dict[str, Any] = {"Idempotent-Replayed": "true"}
    if record.response_location:
        headers["Location"] = record.response_location
    return Response(record.response_body, status=record.response_status, headers=headers)
