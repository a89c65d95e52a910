"""The Dramatiq broker's app config: middleware settings that cannot be written as dotted paths."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django_dramatiq.apps import DjangoDramatiqConfig


class BrokerConfig(DjangoDramatiqConfig):
    """django-dramatiq's app config, passing our settings to the middleware it builds."""

    @classmethod
    def middleware_retries_kwargs(cls) -> dict[str, Any]:
        # Exponential backoff with jitter, capped under RabbitMQ's consumer_timeout (see settings).
        return {
            "max_retries": settings.RETRY_MAX_RETRIES,
            "min_backoff": settings.RETRY_MIN_BACKOFF_MS,
            "max_backoff": settings.RETRY_MAX_BACKOFF_MS,
        }

    @classmethod
    def middleware_timelimit_kwargs(cls) -> dict[str, Any]:
        return {"time_limit": settings.DEFAULT_TIME_LIMIT_MS}
