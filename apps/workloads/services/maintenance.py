"""Housekeeping of the project around the jobs: expired Django sessions."""

from __future__ import annotations

import logging
from importlib import import_module

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)


def sessions_clear_expired() -> int | None:
    """Delete expired Django sessions; returns how many, or None when the backend cannot count."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    get_model_class = getattr(store, "get_model_class", None)
    if get_model_class is None:
        store.clear_expired()
        return None
    deleted, _ = get_model_class().objects.filter(expire_date__lt=timezone.now()).delete()
    logger.info("Deleted %d expired sessions.", deleted, extra={"action": "sessions_cleared"})
    return deleted
