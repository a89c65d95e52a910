"""Copying records from an external HTTP source, idempotently."""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone

from apps.jobs.exceptions import PermanentFailure, TransientFailure
from apps.workloads.models import ExternalRecord

logger = logging.getLogger(__name__)

#: Rows per upsert statement.
SYNC_BATCH_SIZE = 1000


def external_records_sync(*, url: str | None = None) -> dict[str, int]:
    """GET a JSON list of objects with an "id" from `url` and upsert them; safe to run twice."""
    url = url or settings.SYNC_SOURCE_URL
    items = _fetch(url)
    now = timezone.now()
    records = {}
    for position, item in enumerate(items):
        if not isinstance(item, dict) or item.get("id") in (None, ""):
            raise PermanentFailure(f"Item {position} from {url} is not an object with an id.")
        records[str(item["id"])] = item
    known = set(
        ExternalRecord.objects.filter(external_id__in=list(records)).values_list("external_id", flat=True)
    )
    rows = [ExternalRecord(external_id=key, data=data, last_synced_at=now) for key, data in records.items()]
    ExternalRecord.objects.bulk_create(
        rows,
        batch_size=SYNC_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["external_id"],
        update_fields=["data", "last_synced_at"],
    )
    summary = {"fetched": len(items), "created": len(records) - len(known), "updated": len(known)}
    logger.info("Synced %s: %s.", url, summary, extra={"action": "external_records_synced"})
    return summary


def _fetch(url: str) -> list[Any]:
    timeout = (settings.SYNC_CONNECT_TIMEOUT_S, settings.SYNC_READ_TIMEOUT_S)
    try:
        response = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientFailure(f"{url} did not answer: {exc}") from exc
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
    ) as exc:
        # A malformed or unsupported URL (a bad SYNC_SOURCE_URL) is the same on every attempt.
        raise PermanentFailure(f"{url!r} is not a URL that can be fetched: {exc}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientFailure(f"{url} answered {response.status_code}; trying again later.")
    if response.status_code >= 400:
        raise PermanentFailure(f"{url} answered {response.status_code} {response.reason}.")
    try:
        payload = response.json()
    except ValueError as exc:
        raise PermanentFailure(f"{url} did not answer with JSON.") from exc
    if not isinstance(payload, list):
        raise PermanentFailure(f"{url} answered with a JSON {type(payload).__name__}, not a list.")
    return payload
